package app

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/meshinject/meshinject/internal/config"
	"github.com/meshinject/meshinject/internal/version"
)

func newVersionCommand(s Streams) *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the version, commit and default proxy image",
		Args:  cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			cfg, err := config.Load(config.Sources{})
			if err != nil {
				return err
			}
			g := cfg.Typed.Global
			fmt.Fprintf(s.Out, "version: %s\ncommit: %s\nproxy image: %s/%s:%v\n", version.Version, version.Commit, g.Hub, g.Proxy.Image, g.Tag)
			return nil
		},
	}
}
