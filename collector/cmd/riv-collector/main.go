// Command riv-collector is the RIV verifier service that polls a fleet:
//
//	riv-collector dev --dir DIR [--endpoints FILE]... [--interval D] [--addr HOST:PORT]
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
// The production mode (serve --config, HTTPS, the inventory from the
// config and the API) is issue 13's work in progress.
package main

import (
	"os"

	"github.com/openriv/riv/internal/cli"
)

var app = &cli.App{
	Name:    "riv-collector",
	Summary: "RIV verifier service: polls a fleet, appraises it, publishes signed results",
	Commands: []*cli.Command{
		{Name: "dev", Args: "--dir DIR [--endpoints FILE]... [--interval D] [--addr HOST:PORT]",
			Summary: "a zero-setup collector polling the given devices, its API on 127.0.0.1", Help: devHelp, Run: runDev},
	},
}

func main() { os.Exit(app.Run(os.Args[1:], os.Stdout, os.Stderr)) }
