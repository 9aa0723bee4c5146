package main

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/openriv/riv/agent/config"
)

// TestRestartKeys: a reload applies users, NACM and SNMP users; every
// other change is named as needing a restart, optional keys (pointers)
// compared by value.
func TestRestartKeys(t *testing.T) {
	base := func() *config.Config {
		c := config.Default()
		c.Identity.LDevID = &config.Key{Cert: "/etc/riv/ldevid.pem", Handle: 0x81020003}
		return c
	}
	for _, tc := range []struct {
		name string
		edit func(*config.Config)
		want []string
	}{
		{"nothing", func(*config.Config) {}, nil},
		{"users, NACM and SNMP users", func(c *config.Config) {
			c.NETCONF.Users = []config.User{{Name: "ops", AuthorizedKeys: "/k"}}
			c.NACM.Groups = map[string][]string{"g": {"ops"}}
			c.SNMP.Users = []config.SNMPUser{{Name: "n"}}
		}, nil},
		{"an equal LDevID in a new pointer", func(c *config.Config) {
			c.Identity.LDevID = &config.Key{Cert: "/etc/riv/ldevid.pem", Handle: 0x81020003}
		}, nil},
		{"the idle timeout", func(c *config.Config) { c.NETCONF.IdleTimeout = time.Minute }, []string{"netconf"}},
		{"the boots file and a listener", func(c *config.Config) {
			c.SNMP.BootsFile = "/tmp/b"
			c.Listen.SNMP = config.Off
		}, []string{"listen", "snmp"}},
		{"the manufacturer and the inventory", func(c *config.Config) {
			c.Manufacturer, c.Inventory = "x", "/inv"
		}, []string{"manufacturer", "inventory"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cur := base()
			tc.edit(cur)
			if d := cmp.Diff(tc.want, restartKeys(base(), cur)); d != "" {
				t.Errorf("restartKeys (-want +got):\n%s", d)
			}
		})
	}
}
