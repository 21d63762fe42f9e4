package app

import (
	"fmt"
	"os"
	"runtime/debug"
	"strings"

	"github.com/go-logr/logr"
	"github.com/go-logr/zapr"
	"github.com/spf13/cobra"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"k8s.io/apimachinery/pkg/api/resource"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/meshinject/meshinject/certs/selftls"
	"github.com/meshinject/meshinject/cmd/meshinject/app/server"
	"github.com/meshinject/meshinject/webhook"
)

// serveOptions are the options of meshinject serve.
type serveOptions struct {
	server.Options
	// LogLevel is debug, info or error. Default info.
	LogLevel string
	// LogFormat is json (default) or console.
	LogFormat string
	// GCPercent is the garbage collector's target (GOGC), applied unless
	// the GOGC environment variable is set. Default defaultGCPercent.
	GCPercent int
	// MemoryLimit is the container's memory limit (bytes or a quantity);
	// the garbage collector's soft limit is set to 30% of it (softLimitPercent)
	// unless GOMEMLIMIT is set. Default "": none.
	MemoryLimit string
	maxPodBytes string
	extraNames  string
}

// defaultGCPercent is --gc-percent's default: the live heap is a few MiB,
// so a higher target than Go's 100 costs little memory and saves the CPU
// of collecting every few dozen reviews (docs/performance.md).
const defaultGCPercent = 400

// parseMaxPodBytes reads --max-pod-bytes.
func parseMaxPodBytes(v string) (int, error) {
	q, err := resource.ParseQuantity(v)
	if err != nil || q.Sign() <= 0 || q.Value() > 64<<20 {
		return 0, fmt.Errorf("--max-pod-bytes %q: want a size from 1 byte to 64Mi, such as 1Mi", v)
	}
	return int(q.Value()), nil
}

// softLimitPercent is the garbage collector's soft limit as a share of the
// container's memory limit. The reviews in flight hold at most about
// 64 MiB (the webhook's in-flight byte budget), so the live heap stays
// under it; between collections the heap grows to it, and the RSS is that
// plus the binary's pages: a container stays under half its limit, which
// make soak checks (docs/performance.md, "Memory").
const softLimitPercent = 30

// applyMemoryLimit sets the garbage collector's soft limit to
// softLimitPercent of limit (bytes or a quantity) unless GOMEMLIMIT is set, and returns it
// (0 when none is set).
func applyMemoryLimit(limit string) (int64, error) {
	if limit == "" || limit == "0" || os.Getenv("GOMEMLIMIT") != "" {
		return 0, nil
	}
	q, err := resource.ParseQuantity(limit)
	if err != nil || q.Sign() <= 0 {
		return 0, fmt.Errorf("--memory-limit %q: want a positive number of bytes or a quantity such as 256Mi", limit)
	}
	soft := q.Value() / 100 * softLimitPercent
	debug.SetMemoryLimit(soft)
	return soft, nil
}

func newServeCommand(s Streams) *cobra.Command {
	o := &serveOptions{}
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run the mutating admission webhook that injects pods",
		Long: `Run the HTTPS admission webhook: the API server sends it pod CREATE
requests (through a MutatingWebhookConfiguration) and it answers with the
JSON patch that injects the pod, or allows the pod unchanged with a warning
saying why. /metrics is served on --metrics-addr (plain HTTP, or HTTPS to
authorized clients with --metrics-secure), /healthz and /readyz on
--health-addr.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			log, err := newLogger(o.LogLevel, o.LogFormat, s)
			if err != nil {
				return err
			}
			ctrllog.SetLogger(log)
			o.Log = log
			if o.GCPercent <= 0 {
				return fmt.Errorf("--gc-percent %d: want a positive percentage", o.GCPercent)
			}
			if env := os.Getenv("GOGC"); env == "" {
				debug.SetGCPercent(o.GCPercent)
			} else {
				log.Info("GOGC is set; --gc-percent ignored", "GOGC", env)
			}
			if soft, err := applyMemoryLimit(o.MemoryLimit); err != nil {
				return err
			} else if soft > 0 {
				log.Info("garbage collector soft memory limit set", "bytes", soft)
			}
			for _, n := range strings.Split(o.extraNames, ",") {
				if n = strings.TrimSpace(n); n != "" {
					o.SelfManaged.ExtraNames = append(o.SelfManaged.ExtraNames, n)
				}
			}
			if o.MaxPodBytes, err = parseMaxPodBytes(o.maxPodBytes); err != nil {
				return err
			}
			return server.Run(cmd.Context(), o.Options)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.Host, "host", "", "address the webhook listens on (default all)")
	f.IntVar(&o.Port, "port", server.DefaultPort, "HTTPS port of the webhook")
	f.StringVar(&o.MetricsAddr, "metrics-addr", server.DefaultMetricsAddr, "plain-HTTP address for /metrics (0: off)")
	f.StringVar(&o.HealthAddr, "health-addr", server.DefaultHealthAddr, "plain-HTTP address for /healthz and /readyz")
	f.StringVar(&o.PprofAddr, "pprof-addr", "", "plain-HTTP address for net/http/pprof under /debug/pprof/ (default off)")
	f.BoolVar(&o.MetricsSecure, "metrics-secure", false, "serve /metrics over HTTPS to clients the API server authenticates and authorizes (get on /metrics); needs cluster access")
	f.BoolVar(&o.MetricsNamespaceLabel, "metrics-namespace-label", false, "add a namespace label to the injection counters (a series per namespace)")
	f.StringVar(&o.TLSMode, "tls-mode", server.TLSModeCertDir, "cert-dir: tls.crt/tls.key from --cert-dir, reloaded on change; self-managed: a CA and serving certificate kept in a Secret, caBundle written into the webhook configuration")
	f.StringVar(&o.CertDir, "cert-dir", server.DefaultCertDir, "directory with tls.crt and tls.key (cert-dir mode)")
	f.StringVar(&o.SelfManaged.Namespace, "namespace", "", "namespace of the TLS Secret in self-managed mode (default $POD_NAMESPACE, else meshinject)")
	f.StringVar(&o.SelfManaged.SecretName, "tls-secret", "", "TLS Secret name in self-managed mode (default meshinject[-<revision>]-tls)")
	f.StringVar(&o.SelfManaged.ServiceName, "service-name", "", "webhook Service name the certificate is for (default meshinject[-<revision>])")
	f.StringVar(&o.extraNames, "tls-extra-names", "", "extra DNS names or IPs for the self-managed certificate, comma-separated")
	f.StringVar(&o.SelfManaged.WebhookSelector, "webhook-selector", "", "label selector of the MutatingWebhookConfigurations whose caBundle is managed (default meshinject.io/rev=<revision|default>)")
	f.DurationVar(&o.SelfManaged.ServingDuration, "tls-serving-duration", selftls.DefaultServingDuration, "lifetime of the self-managed serving certificate, renewed two thirds through")
	f.DurationVar(&o.SelfManaged.CheckInterval, "tls-check-interval", selftls.DefaultCheckInterval, "how often the self-managed Secret and renewal time are checked")
	f.StringVar(&o.ConfigDir, "config-dir", "", "directory with the config, values and mesh files (a mounted ConfigMap), reloaded on change (default: built-in configuration)")
	f.StringVarP(&o.Revision, "revision", "r", "", "control-plane revision served (default: the default revision)")
	f.BoolVar(&o.StrictValues, "strict-values", false, "refuse a configuration whose values carry a key injection does not read, naming it (default: load it, log each such key and count it in meshinject_config_warnings)")
	nativeSidecarsFlag(f, &o.NativeSidecars, "on when every node's kubelet is 1.33 or newer, or the scheduled node's; on without cluster access")
	kubeconfigFlag(f, &o.Kubeconfig, "in-cluster config when running in a pod, else no cluster access")
	f.BoolVar(&o.EnableHTTP2, "enable-http2", false, "serve HTTP/2 (off by default because of the HTTP/2 rapid-reset CVEs)")
	f.StringVar(&o.maxPodBytes, "max-pod-bytes", resource.NewQuantity(webhook.DefaultMaxPodBytes, resource.BinarySI).String(), "largest pod, as JSON, that is injected (bytes or a quantity); a larger pod is refused with a message saying so (what a review costs per byte: docs/performance.md)")
	f.DurationVar(&o.DrainDelay, "drain-delay", server.DefaultDrainDelay, "on SIGTERM, keep serving this long with /readyz failing and connections closed after each response, then finish in-flight reviews and exit (0: none)")
	f.DurationVar(&o.ShutdownTimeout, "shutdown-timeout", server.DefaultShutdownTimeout, "after the drain, how long in-flight reviews and background work get to finish")
	f.StringVar(&o.LogLevel, "log-level", "info", "log level: debug, info or error")
	f.StringVar(&o.LogFormat, "log-format", "json", "log format: json or console")
	f.IntVar(&o.GCPercent, "gc-percent", defaultGCPercent, "garbage-collector target percentage, as GOGC (ignored when GOGC is set)")
	f.StringVar(&o.MemoryLimit, "memory-limit", "", "the container's memory limit (bytes or a quantity): the garbage collector's soft limit is set to 30% of it (ignored when GOMEMLIMIT is set)")
	return cmd
}

// newLogger builds the zap-backed logr logger, writing to s.Err.
func newLogger(level, format string, s Streams) (logr.Logger, error) {
	var lvl zapcore.Level
	switch level {
	case "debug":
		lvl = zapcore.DebugLevel
	case "info":
		lvl = zapcore.InfoLevel
	case "error":
		lvl = zapcore.ErrorLevel
	default:
		return logr.Logger{}, fmt.Errorf("--log-level %q: want debug, info or error", level)
	}
	encCfg := zap.NewProductionEncoderConfig()
	encCfg.TimeKey, encCfg.EncodeTime = "ts", zapcore.ISO8601TimeEncoder
	var enc zapcore.Encoder
	switch format {
	case "json":
		enc = zapcore.NewJSONEncoder(encCfg)
	case "console":
		enc = zapcore.NewConsoleEncoder(encCfg)
	default:
		return logr.Logger{}, fmt.Errorf("--log-format %q: want json or console", format)
	}
	core := zapcore.NewCore(enc, zapcore.AddSync(s.Err), zap.NewAtomicLevelAt(lvl))
	return zapr.NewLogger(zap.New(core)), nil
}
