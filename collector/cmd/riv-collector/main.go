// Command riv-collector is the RIV verifier service that polls a fleet:
//
//	riv-collector dev --dir DIR [--endpoints FILE]... [--interval D] [--addr HOST:PORT]
//	riv-collector serve --config FILE
//	riv-collector config check --config FILE
//	riv-collector version
//
// dev is the zero-setup collector, as riv-agent dev is the zero-setup
// device: its SQLite store, EAR signing key and API tokens in DIR, the
// devices of the given endpoints.json files (riv-agent dev, riv-router)
// polled every interval, the API on 127.0.0.1 over plain HTTP. When it
// serves it writes DIR/collector.json (atomically):
//
//	{"url": "http://127.0.0.1:P", "admin_token": "...", "readonly_token": "..."}
//
// serve is the production mode: the inventory, trust anchors, RIM
// sources and policy sets of a configuration file (deploy/riv-collector.yaml),
// the API over HTTPS, SIGHUP to reload; config check validates the file
// as serve would load it.
package main

import (
	"fmt"
	"os"

	"github.com/openriv/riv/collector/config"

	"github.com/openriv/riv/internal/cli"
)

var app = &cli.App{
	Name:    "riv-collector",
	Summary: "RIV verifier service: polls a fleet, appraises it, publishes signed results",
	Commands: []*cli.Command{
		{Name: "dev", Args: "--dir DIR [--endpoints FILE]... [--interval D] [--addr HOST:PORT]",
			Summary: "a zero-setup collector polling the given devices, its API on 127.0.0.1", Help: devHelp, Run: runDev},
		{Name: "serve", Args: "--config FILE", Summary: "run the collector of a configuration file (HTTPS API, SIGHUP reloads)", Help: serveHelp, Run: runServe},
		{Name: "config check", Args: "--config FILE", Summary: "validate the file as serve loads it: every key, file, secret and certificate",
			Run: runConfigCheck},
	},
}

func main() { os.Exit(app.Run(os.Args[1:], os.Stdout, os.Stderr)) }

func runConfigCheck(env *cli.Env, args []string) error {
	cfg, file, err := loadConfig(env, args, "config check")
	if err != nil {
		return err
	}
	fmt.Fprintf(env.Stdout, "%s: ok: %d devices, %d policy sets, API on %s\n", file, len(cfg.Devices), len(cfg.Policies), cfg.Listen)
	return nil
}

// loadConfig parses a command's --config flag and loads that file; a
// file that does not load is a usage error of cmd.
func loadConfig(env *cli.Env, args []string, cmd string) (*config.Config, string, error) {
	fs := env.Flags()
	file := fs.String("config", "/etc/riv/collector.yaml", "configuration `FILE`")
	if err := env.Parse(fs, args); err != nil {
		return nil, "", err
	}
	cfg, err := config.Load(*file)
	if err != nil {
		return nil, "", cli.Usage("%s: %v", cmd, err)
	}
	return cfg, *file, nil
}
