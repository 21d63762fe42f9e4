// Package ops pins the tools that check meshinject's deploy/ tree: helm
// (the chart's lint and render), kustomize (the bases the chart is
// compared with), promtool (the alerting rules and their unit tests) and
// promnames (the metric names the rules and the dashboard query).
// e2e/tools/build.sh ops builds them.
package ops
