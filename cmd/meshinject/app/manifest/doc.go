// Package manifest reads and writes Kubernetes manifest streams (multi-
// document YAML, JSON, v1 List) and applies a function to the pod of every
// workload in them: Pod, Deployment, StatefulSet, DaemonSet, ReplicaSet,
// ReplicationController, Job and CronJob. Objects of other kinds, and
// workloads the function leaves unchanged, are written back byte for byte.
// Fields unknown to the vendored k8s.io/api types are preserved.
package manifest
