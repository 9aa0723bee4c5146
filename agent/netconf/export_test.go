package netconf_test

import (
	"encoding/base64"

	"github.com/openriv/riv/agent/netconf"
)

func b64(b []byte) string { return base64.StdEncoding.EncodeToString(b) }

func nacmDenyAll() netconf.NACM { return netconf.NACM{} }
