// Command riv-agent is the RIV attester that runs on each router:
//
//	riv-agent provision --tpm SPEC --dir DIR --serial S --model M [--alg ecc-p256|ecc-p384|rsa-2048] [--local]
//	                    --ca-cert CA.pem --ca-key CA-KEY.pem --tpm-ca VENDOR-CA.pem [--tpm-ca ...]
//	riv-agent serve [--config FILE] [--ready-file FILE]
//	riv-agent config check [--json] FILE
//	riv-agent dev --dir DIR [flags]
//	riv-agent version
//
// provision creates the IDevID and IAK (or, with --local, the owner's
// LDevID and LAK) in the TPM at persistent handles, enrolls them with the
// given CA — CSR, TPM2_Certify evidence, EK certificate check and
// credential activation — and writes the certificates to DIR. Running it
// again on a provisioned device changes nothing. serve is the production
// mode: the agent of a router, from its config file (agent/config). dev is the one-process
// quick start: a simulated router with its TPM serving NETCONF, RESTCONF
// and SNMP. Every command takes --help; the exit codes are those of every
// RIV binary (internal/cli).
package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/openriv/riv/agent/provision"
	"github.com/openriv/riv/internal/cli"
	"github.com/openriv/riv/pkg/identity"
	"github.com/openriv/riv/pkg/tpm"
)

var app = &cli.App{
	Name:    "riv-agent",
	Summary: "RIV attester for routers (RFC 9683, RFC 9684)",
	Commands: []*cli.Command{
		{Name: "provision", Args: "--tpm SPEC --dir DIR --serial S --model M --ca-cert F --ca-key F --tpm-ca F [--alg A] [--local]",
			Summary: "create and enroll the device identity (IDevID/IAK, or LDevID/LAK) in the TPM", Run: runProvision},
		{Name: "serve", Args: "[--config FILE] [--ready-file FILE]", Summary: "run the attester of this router from its config file until SIGTERM (SIGHUP reloads)",
			Help: serveHelp, Run: runServe},
		{Name: "config check", Args: "[--json] FILE", Summary: "validate a serve config file and every file it names", Help: configCheckHelp, Run: runConfigCheck},
		{Name: "dev", Args: "--dir DIR [flags]", Summary: "run a simulated router (TPM simulator) serving NETCONF, RESTCONF and SNMPv3 until SIGTERM",
			Help: devHelp, Run: runDev},
	},
}

func main() { os.Exit(app.Run(os.Args[1:], os.Stdout, os.Stderr)) }

func runProvision(env *cli.Env, args []string) error {
	out := env.Stdout
	fs := env.Flags()
	tpmSpec := fs.String("tpm", "/dev/tpmrm0", "TPM: /dev/tpmrm0, swtpm:PATH, swtpm:HOST:PORT or sim")
	dir := fs.String("dir", "/etc/riv", "where certificates are written")
	serial := fs.String("serial", "", "device serial number")
	model := fs.String("model", "", "device model")
	algName := fs.String("alg", "ecc-p256", "key algorithm: ecc-p256, ecc-p384 or rsa-2048")
	local := fs.Bool("local", false, "enroll the owner's LDevID/LAK instead of IDevID/IAK")
	caCert := fs.String("ca-cert", "", "issuing CA certificate (PEM)")
	caKey := fs.String("ca-key", "", "issuing CA private key (PEM, PKCS#8)")
	var tpmCAs cli.Strings
	fs.Var(&tpmCAs, "tpm-ca", "TPM vendor CA certificates (PEM; repeatable)")
	if err := env.Parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return cli.Usage("provision: unexpected argument %q", fs.Arg(0))
	}
	if *serial == "" || *caCert == "" || *caKey == "" || len(tpmCAs) == 0 {
		return cli.Usage("provision: --serial, --ca-cert, --ca-key and --tpm-ca are required")
	}
	alg, err := tpm.ParseKeyAlg(*algName)
	if err != nil {
		return cli.Usage("provision: %v", err)
	}
	ca, err := provision.LoadCA(*caCert, *caKey)
	if err != nil {
		return cli.Usage("provision: %v", err)
	}
	auth := &identity.Authority{CA: ca, MakeCredential: tpm.MakeCredential, Local: *local}
	for _, f := range tpmCAs {
		if err := addCerts(auth, f); err != nil {
			return cli.Usage("provision: %v", err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	tp, err := tpm.Open(ctx, *tpmSpec)
	if err != nil {
		return cli.Unreachable("provision: TPM %s: %v", *tpmSpec, err)
	}
	defer tp.Close()
	res, err := provision.Provision(ctx, tp, auth, provision.Options{Serial: *serial, Model: *model, Alg: alg, Local: *local, Dir: *dir})
	if err != nil {
		return cli.Failed("provision: %v", err)
	}
	log := slog.New(slog.NewTextHandler(out, nil))
	log.Info("provisioned", "serial", *serial, "created", res.Created, "identity_handle", fmt.Sprintf("0x%08x", uint32(res.IDKey.Handle)),
		"ak_handle", fmt.Sprintf("0x%08x", uint32(res.AKKey.Handle)), "identity_cert_serial", res.ID.SerialNumber.Text(16), "dir", *dir)
	return nil
}

func addCerts(a *identity.Authority, file string) error {
	b, err := os.ReadFile(file)
	if err != nil {
		return fmt.Errorf("TPM CA: %w", err)
	}
	if _, err := a.AddTPMCAs(b); err != nil {
		return fmt.Errorf("TPM CA %s: %w", file, err)
	}
	return nil
}
