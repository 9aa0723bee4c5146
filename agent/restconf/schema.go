package restconf

import "github.com/openriv/riv/agent/netconf"

// What RFC 7951's JSON encoding needs to know that the XML encoding does
// not say: which nodes are lists and leaf-lists, and each leaf's type
// class. The agent serves a fixed set of modules, so a table keyed by
// "parent/name" (or "name" when unambiguous) covers them; it is checked
// against the official modules by yanglint in the tests.

type kind uint8

const (
	single   kind = iota // container or leaf
	list                 // list: an array of objects
	leafList             // leaf-list: an array of values
)

type valueType uint8

const (
	vString valueType = iota // string, binary, enumeration, 64-bit integers
	vNumber                  // 8/16/32-bit integers
	vBool
	vEmpty    // type empty: [null]
	vIdentity // identityref: "module:identity"
)

type schemaNode struct {
	kind kind
	typ  valueType
	key  string // a list's key leaf
}

var schema = map[string]schemaNode{
	// ietf-tpm-remote-attestation
	"tpms/tpm":                                          {kind: list, key: "name"},
	"compute-nodes/compute-node":                        {kind: list, key: "node-id"},
	"tpm/hardware-based":                                {typ: vBool},
	"tpm/physical-index":                                {typ: vNumber},
	"tpm/firmware-version":                              {typ: vIdentity},
	"tpm/tpm12-hash-algo":                               {typ: vIdentity},
	"tpm/tpm12-pcrs":                                    {kind: leafList, typ: vNumber},
	"tpm/tpm20-pcr-bank":                                {kind: list, key: "tpm20-hash-algo"},
	"tpm20-pcr-bank/tpm20-hash-algo":                    {typ: vIdentity},
	"tpm20-pcr-bank/pcr-index":                          {kind: leafList, typ: vNumber},
	"certificates/certificate":                          {kind: list, key: "name"},
	"attester-supported-algos/tpm12-hash":               {kind: leafList, typ: vIdentity},
	"attester-supported-algos/tpm20-hash":               {kind: leafList, typ: vIdentity},
	"attester-supported-algos/tpm12-asymmetric-signing": {kind: leafList, typ: vIdentity},
	"attester-supported-algos/tpm20-asymmetric-signing": {kind: leafList, typ: vIdentity},
	// RPC input
	"tpm20-attestation-challenge/tpm20-pcr-selection": {kind: list},
	"tpm20-pcr-selection/tpm20-hash-algo":             {typ: vIdentity},
	"tpm20-pcr-selection/pcr-index":                   {kind: leafList, typ: vNumber},
	"tpm12-attestation-challenge/pcr-index":           {kind: leafList, typ: vNumber},
	"input/log-type":                                  {typ: vIdentity},
	"input/log-selector":                              {kind: list},
	"log-selector/name":                               {kind: leafList},
	"log-selector/log-entry-quantity":                 {typ: vNumber},
	// RPC output
	"output/tpm20-attestation-response":              {kind: list},
	"tpm20-attestation-response/up-time":             {typ: vNumber},
	"tpm20-attestation-response/unsigned-pcr-values": {kind: list},
	"unsigned-pcr-values/tpm20-hash-algo":            {typ: vIdentity},
	"unsigned-pcr-values/pcr-values":                 {kind: list, key: "pcr-index"},
	"pcr-values/pcr-index":                           {typ: vNumber},
	"system-event-logs/node-data":                    {kind: list},
	"node-data/up-time":                              {typ: vNumber},
	"bios-event-logs/bios-event-entry":               {kind: list, key: "event-number"},
	"bios-event-entry/event-number":                  {typ: vNumber},
	"bios-event-entry/event-type":                    {typ: vNumber},
	"bios-event-entry/pcr-index":                     {typ: vNumber},
	"bios-event-entry/event-size":                    {typ: vNumber},
	"bios-event-entry/digest-list":                   {kind: list},
	"bios-event-entry/event-data":                    {kind: leafList},
	"digest-list/hash-algo":                          {typ: vIdentity},
	"digest-list/digest":                             {kind: leafList},
	"ima-event-logs/ima-event-entry":                 {kind: list, key: "event-number"},
	"ima-event-entry/pcr-index":                      {typ: vNumber},
	"boot-event-logs/boot-event-entry":               {kind: list, key: "event-number"},
	"boot-event-entry/pcr-index":                     {typ: vNumber},
	// ietf-keystore
	"asymmetric-keys/asymmetric-key":    {kind: list, key: "name"},
	"asymmetric-key/public-key-format":  {typ: vIdentity},
	"asymmetric-key/private-key-format": {typ: vIdentity},
	"asymmetric-key/hidden-private-key": {typ: vEmpty},
	// ietf-yang-library
	"yang-library/module-set":       {kind: list, key: "name"},
	"module-set/module":             {kind: list, key: "name"},
	"module-set/import-only-module": {kind: list},
	"module/feature":                {kind: leafList},
	"module/location":               {kind: leafList},
	"module/deviation":              {kind: leafList},
	"module/submodule":              {kind: list, key: "name"},
	"yang-library/schema":           {kind: list, key: "name"},
	"schema/module-set":             {kind: leafList},
	"yang-library/datastore":        {kind: list, key: "name"},
	"datastore/name":                {typ: vIdentity},
}

func lookup(parent, name string) schemaNode { return schema[parent+"/"+name] }

// Modules by XML namespace, and the prefixes used for their identities
// in XML the server builds from JSON input.
var modules = map[string]string{
	netconf.NSTPM:        "ietf-tpm-remote-attestation",
	netconf.NSTAA:        "ietf-tcg-algs",
	netconf.NSKeystore:   "ietf-keystore",
	netconf.NSCT:         "ietf-crypto-types",
	netconf.NSYangLib:    "ietf-yang-library",
	netconf.NSDatastores: "ietf-datastores",
}

var namespaces = func() map[string]string {
	m := map[string]string{}
	for ns, mod := range modules {
		m[mod] = ns
	}
	return m
}()
