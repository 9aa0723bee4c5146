package netconf

// NACM is the NETCONF access control configuration (RFC 8341), reduced to
// what the agent enforces: groups of users and rules on operations.
//
// The RFC 9684 RPCs are treated as nacm:default-deny-all: a quote or a log
// reveals the device's software state and costs TPM time, so they run only
// for users a rule permits, even when ExecDefault is "permit".
type NACM struct {
	// Disabled turns enforcement off (enable-nacm false). Never the
	// default.
	Disabled bool `yaml:"disabled"`
	// Groups maps a group name to its user names.
	Groups map[string][]string `yaml:"groups"`
	// Rules are tried in order; the first that matches decides.
	Rules []Rule `yaml:"rules"`
	// ExecDefault applies to operations no rule matches (other than the
	// attestation RPCs): "permit" (RFC 8341's default) or "deny".
	ExecDefault string `yaml:"exec-default"`
}

// Rule permits or denies an operation to a group.
type Rule struct {
	Group     string `yaml:"group"`
	Operation string `yaml:"operation"` // RPC name, or "*"
	Action    string `yaml:"action"`    // "permit" or "deny"
}

// defaultDenyAll lists the operations that need an explicit permit.
var defaultDenyAll = map[string]bool{
	NSTPM + " tpm20-challenge-response-attestation": true,
	NSTPM + " log-retrieval":                        true,
	NSBase + " kill-session":                        true,
}

// allowed decides whether user may run the operation ns/name. close-session
// is always allowed (RFC 8341 §3.2.4).
func (n *NACM) allowed(user, ns, name string) bool {
	if n.Disabled || (ns == NSBase && name == "close-session") {
		return true
	}
	for _, r := range n.Rules {
		if r.Operation != "*" && r.Operation != name {
			continue
		}
		if !n.inGroup(user, r.Group) {
			continue
		}
		return r.Action == "permit"
	}
	if defaultDenyAll[ns+" "+name] {
		return false
	}
	return n.ExecDefault != "deny"
}

func (n *NACM) inGroup(user, group string) bool {
	if group == "*" {
		return true
	}
	for _, u := range n.Groups[group] {
		if u == user {
			return true
		}
	}
	return false
}
