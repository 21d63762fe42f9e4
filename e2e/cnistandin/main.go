// Command cnistandin is the node tier's stand-in for Istio's CNI plugin (a
// test double): chained after the bridge plugin, it sets up a new pod's
// traffic capture as the plugin does for a sidecar pod, by running Istio's
// own rule code (pilot-agent istio-iptables, with Istio's default ports)
// inside the pod's network namespace, for the pods of namespaces whose name
// starts with the configured prefix; every other pod it passes through
// untouched. It reads no pod annotation and talks to no API server, unlike
// Istio's plugin.
//
// Its configuration, in the network's plugin list:
//
//	{"type": "cnistandin", "pilotAgent": "/path/to/pilot-agent", "namespacePrefix": "mesh-cni-rules-"}
package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
)

type config struct {
	CNIVersion      string          `json:"cniVersion"`
	PrevResult      json.RawMessage `json:"prevResult"`
	PilotAgent      string          `json:"pilotAgent"`
	NamespacePrefix string          `json:"namespacePrefix"`
}

func main() {
	if err := run(os.Getenv("CNI_COMMAND"), os.Stdin, os.Stdout); err != nil {
		// The CNI error format, on stdout.
		_ = json.NewEncoder(os.Stdout).Encode(map[string]any{"cniVersion": "1.0.0", "code": 999, "msg": "cnistandin: " + err.Error()})
		os.Exit(1)
	}
}

func run(command string, in io.Reader, out io.Writer) error {
	if command == "VERSION" {
		_, err := fmt.Fprintln(out, `{"cniVersion":"1.0.0","supportedVersions":["0.4.0","1.0.0"]}`)
		return err
	}
	b, err := io.ReadAll(io.LimitReader(in, 1<<20))
	if err != nil {
		return err
	}
	var cfg config
	if err := json.Unmarshal(b, &cfg); err != nil {
		return fmt.Errorf("configuration: %w", err)
	}
	if command != "ADD" {
		return nil // DEL, CHECK, GC: the rules go with the namespace
	}
	if ns := cniArg("K8S_POD_NAMESPACE"); cfg.NamespacePrefix != "" && strings.HasPrefix(ns, cfg.NamespacePrefix) {
		netns := os.Getenv("CNI_NETNS")
		cmd := exec.Command("nsenter", "--net="+netns, cfg.PilotAgent, "istio-iptables", //nolint:gosec // the binary of our own configuration
			"-p", "15001", "-z", "15006", "-u", "1337", "-m", "REDIRECT", "-i", "*", "-x", "", "-b", "*", "-d", "15090,15021,15020")
		if msg, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("istio-iptables in %s: %w\n%s", netns, err, msg)
		}
	}
	prev := cfg.PrevResult
	if len(prev) == 0 {
		prev = []byte(`{"cniVersion":"` + cfg.CNIVersion + `"}`)
	}
	_, err = out.Write(prev)
	return err
}

// cniArg returns the value of key in CNI_ARGS (K=V;K=V).
func cniArg(key string) string {
	for _, kv := range strings.Split(os.Getenv("CNI_ARGS"), ";") {
		if k, v, ok := strings.Cut(kv, "="); ok && k == key {
			return v
		}
	}
	return ""
}
