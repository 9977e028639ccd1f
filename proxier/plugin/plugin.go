// Package plugin is the kubectl plugin, `kubectl nftproxy dump|trace`: it
// finds the nftproxy pod of a node and runs nftproxy --dump or --trace in
// it (exec), so that an admin needs no shell on the node.
package plugin

import (
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"
)

// pluginName is the name kubectl finds plugins by: `kubectl nftproxy ...`
// runs kubectl-nftproxy from PATH (the nftproxy binary, copied or linked).
const pluginName = "kubectl-nftproxy"

// IsPlugin reports whether the binary runs as the plugin (by its name).
func IsPlugin(argv0 string) bool {
	return strings.TrimSuffix(filepath.Base(argv0), ".exe") == pluginName
}

// pluginOptions are the flags of `kubectl nftproxy`.
type pluginOptions struct {
	kubeconfig, context  string
	namespace, daemonSet string
	container            string
	node                 string
}

// NewCommand returns the `kubectl nftproxy` command.
func NewCommand() *cobra.Command {
	o := &pluginOptions{namespace: "kube-system", daemonSet: "nftproxy", container: "nftproxy"}
	root := &cobra.Command{
		Use:          "nftproxy",
		Short:        "Run nftproxy's --dump and --trace inside a node's nftproxy pod",
		SilenceUsage: true,
		Annotations:  map[string]string{cobra.CommandDisplayNameAnnotation: "kubectl nftproxy"},
	}
	fs := root.PersistentFlags()
	fs.StringVar(&o.kubeconfig, "kubeconfig", o.kubeconfig, "Path to the kubeconfig file (default: $KUBECONFIG or ~/.kube/config).")
	fs.StringVar(&o.context, "context", o.context, "The kubeconfig context to use.")
	fs.StringVarP(&o.namespace, "namespace", "n", o.namespace, "Namespace of the nftproxy DaemonSet.")
	fs.StringVar(&o.daemonSet, "daemonset", o.daemonSet, "Name of the nftproxy DaemonSet.")
	fs.StringVarP(&o.container, "container", "c", o.container, "Container running nftproxy in its pods.")
	fs.StringVar(&o.node, "node", o.node, "Node whose rules to read (required).")

	var format, service, path string
	dump := &cobra.Command{
		Use:   "dump --node NODE [--format text|json|nft] [--service NAMESPACE/NAME]",
		Short: "Print the Service ports programmed in the node's nftables",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return o.run(cmd.Context(), cmd, dumpCommand(format, service))
		},
	}
	dump.Flags().StringVar(&format, "format", "text", "Output format: text, json or nft.")
	dump.Flags().StringVar(&service, "service", "", "Only this Service (namespace/name).")
	trace := &cobra.Command{
		Use:   "trace --node NODE SRC DST:PORT/PROTO",
		Short: "Explain where a new connection from SRC to DST:PORT/PROTO would go on the node",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			return o.run(cmd.Context(), cmd, traceCommand(args[0], args[1], path))
		},
	}
	trace.Flags().StringVar(&path, "path", "", "Path of the packet: forwarded, local, to-local or auto (nftproxy's default).")
	root.AddCommand(dump, trace)
	return root
}

// dumpCommand and traceCommand are what runs in the pod.
func dumpCommand(format, service string) []string {
	cmd := []string{"nftproxy", "--dump", "--dump-format=" + format}
	if service != "" {
		cmd = append(cmd, "--dump-service="+service)
	}
	return cmd
}

func traceCommand(src, dst, path string) []string {
	cmd := []string{"nftproxy", "--trace=" + src}
	if path != "" {
		cmd = append(cmd, "--trace-path="+path)
	}
	return append(cmd, dst)
}
