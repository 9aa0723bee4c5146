// Command riv-router builds a testbed router the real way and runs it:
//
//	riv-router --dir DIR [--bios-log FILE] [--serial S] [--attack A] [--agent BIN]
//	riv-router measure --dir DIR [--as NAME] FILE
//	riv-router reboot --dir DIR
//
// The first form manufactures an swtpm (EK and its certificate from a
// project-local TPM vendor CA), provisions the IDevID and IAK into it with
// `riv-agent provision` against the testbed manufacturer, boots it — the
// simulated measured boot, or every event of a captured firmware log
// extended into the TPM — writes the logs where a kernel would
// (DIR/securityfs), has the testbed vendor sign the RIMs of what was
// booted, writes DIR/agent.yaml and runs `riv-agent serve --config
// DIR/agent.yaml`, then writes DIR/endpoints.json (the keys of `riv-agent
// dev`) and runs until SIGTERM or SIGINT. Running it again on DIR keeps
// the TPM and its identity.
//
// measure is IMA measuring a file at run time: PCR 10 extended in the
// router's TPM, the entry appended to its IMA log. reboot is a platform
// reset: the agent stops, the TPM is reset (resetCount grows, PCRs
// return to zero), the router boots again and the agent starts on the
// same addresses.
package main

import (
	"os"

	"github.com/openriv/riv/internal/cli"
)

var app = &cli.App{
	Name:    "riv-router",
	Summary: "a testbed router: swtpm, provisioning, measured boot, riv-agent serve",
	Main: &cli.Command{Args: "--dir DIR [--bios-log FILE] [--serial S] [--attack A] [--agent BIN]",
		Summary: "build (or start again) the router in DIR and run it until SIGTERM",
		Help:    runHelp, Run: runRouter},
	Commands: []*cli.Command{
		{Name: "measure", Args: "--dir DIR [--as NAME] FILE", Summary: "measure FILE into the running router as IMA does (PCR 10 and the IMA log)", Run: runMeasure},
		{Name: "reboot", Args: "--dir DIR", Summary: "reboot the running router: TPM reset, fresh boot, same identity", Run: runReboot},
	},
}

const runHelp = `Manufactures an swtpm, provisions IDevID/IAK with riv-agent provision,
boots the router (simulated firmware, or --bios-log: a captured TCG
firmware log extended event by event into the TPM so that it replays to
the TPM's PCRs), writes the kernel-format logs, the vendor's signed RIMs
and DIR/agent.yaml, runs riv-agent serve on it and writes
DIR/endpoints.json. Logs that cannot be reproduced in a TPM from outside
the firmware are refused with the reason: a StartupLocality other than 0,
an event extending PCR 10 (the NOS's), banks swtpm cannot allocate.
Subcommands: riv-router measure, riv-router reboot (see their --help).`

func main() { os.Exit(app.Run(os.Args[1:], os.Stdout, os.Stderr)) }
