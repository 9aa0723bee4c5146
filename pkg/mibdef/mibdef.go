// Package mibdef holds the object identifiers of the project's MIB
// (mibs/RIV-ATTESTATION-MIB.txt) and the standard ones the SNMP agent
// reports. The agent serves them and tests walk them with net-snmp, so a
// change here that the MIB text does not make shows up there.
package mibdef

import "strconv"

// OID is an object identifier.
type OID []uint32

// String is o in dotted form, as net-snmp prints it (".1.3.6...").
func (o OID) String() string {
	var b []byte
	for _, n := range o {
		b = strconv.AppendUint(append(b, '.'), uint64(n), 10)
	}
	return string(b)
}

// Child returns o extended by sub-identifiers.
func (o OID) Child(sub ...uint32) OID {
	return append(append(OID(nil), o...), sub...)
}

var (
	// RIVAttestationMIB is { experimental 9684 }.
	RIVAttestationMIB = OID{1, 3, 6, 1, 3, 9684}
	rivObjects        = RIVAttestationMIB.Child(1)
	rivDevice         = rivObjects.Child(1)

	TpmName         = rivDevice.Child(1)
	TpmManufacturer = rivDevice.Child(2)
	TpmResetCount   = rivDevice.Child(3)
	TpmRestartCount = rivDevice.Child(4)
	UpTime          = rivDevice.Child(5)
	FragmentSize    = rivDevice.Child(6)
	// ChallengeLifetime and ChallengeMaxRows bound the challenge table.
	ChallengeLifetime = rivDevice.Child(7)
	ChallengeMaxRows  = rivDevice.Child(8)

	// PcrValue is rivPcrValue; instances are PcrValue.BANK.INDEX.
	PcrValue = rivObjects.Child(2, 1, 3)
	// Cert columns; instances are COLUMN.N, N from 1.
	CertName   = rivObjects.Child(3, 1, 2)
	CertType   = rivObjects.Child(3, 1, 3)
	CertData   = rivObjects.Child(3, 1, 4)
	CertLength = rivObjects.Child(3, 1, 5)
	// CertFragmentData instances are CertFragmentData.N.FRAGMENT.
	CertFragmentData = rivObjects.Child(9, 1, 2)
	// Log columns; instances are COLUMN.TYPE (bios 1, ima 2, netequipBoot 3).
	LogEntries    = rivObjects.Child(4, 1, 2)
	LogLastDigest = rivObjects.Child(4, 1, 3)

	// ChallengeEntry is rivChallengeEntry; its columns are
	// ChallengeEntry.COLUMN.INDEX.
	ChallengeEntry = rivObjects.Child(5, 1)
	// QuoteData instances are QuoteData.CHALLENGE.PART.FRAGMENT.
	QuoteData = rivObjects.Child(6, 1, 3)
	// EventEntry is rivEventEntry; its columns are
	// EventEntry.COLUMN.TYPE.NUMBER.
	EventEntry = rivObjects.Child(7, 1)
	// EventData instances are EventData.TYPE.NUMBER.FRAGMENT.
	EventData = rivObjects.Child(8, 1, 2)

	// Notifications (rivNotifications, { rivAttestationMIB 0 }).
	TpmReset    = RIVAttestationMIB.Child(0, 1)
	PcrExtended = RIVAttestationMIB.Child(0, 2)
	LogGrown    = RIVAttestationMIB.Child(0, 3)

	// RIVAgent is rivAgent, the agent's sysObjectID.
	RIVAgent = RIVAttestationMIB.Child(3, 1)
	// RIVCompliance is rivCompliance, listed in sysORTable.
	RIVCompliance = RIVAttestationMIB.Child(2, 1, 1)
)

// The columns of rivChallengeEntry.
const (
	ChallengeNonce           = 2
	ChallengeBank            = 3
	ChallengePcrSelect       = 4
	ChallengeCertName        = 5
	ChallengeState           = 6
	ChallengeError           = 7
	ChallengeAttestLength    = 8
	ChallengeSignatureLength = 9
	ChallengeRowStatus       = 10
	ChallengeSelection       = 11
)

// The columns of rivEventEntry.
const (
	EventPcr        = 2
	EventType       = 3
	EventTemplate   = 4
	EventDigests    = 5
	EventDataLength = 6
)

// rivQuotePart values.
const (
	QuoteAttest    = 1
	QuoteSignature = 2
)

// rivChallengeState values.
const (
	StatePending = 1
	StateReady   = 2
	StateFailed  = 3
)

// RowStatus values (SNMPv2-TC, RFC 2579).
const (
	RowActive        = 1
	RowNotInService  = 2
	RowNotReady      = 3
	RowCreateAndGo   = 4
	RowCreateAndWait = 5
	RowDestroy       = 6
)

// SNMPv2-MIB (RFC 3418): the system group, which NMS discovery reads, and
// the snmp group's counters.
var (
	system          = OID{1, 3, 6, 1, 2, 1, 1}
	SysDescr        = system.Child(1, 0)
	SysObjectID     = system.Child(2, 0)
	SysUpTime       = system.Child(3, 0)
	SysContact      = system.Child(4, 0)
	SysName         = system.Child(5, 0)
	SysLocation     = system.Child(6, 0)
	SysServices     = system.Child(7, 0)
	SysORLastChange = system.Child(8, 0)
	// sysORTable columns; instances are COLUMN.INDEX.
	SysORID     = system.Child(9, 1, 2)
	SysORDescr  = system.Child(9, 1, 3)
	SysORUpTime = system.Child(9, 1, 4)

	snmp                    = OID{1, 3, 6, 1, 2, 1, 11}
	SnmpInPkts              = snmp.Child(1, 0)
	SnmpInBadVersions       = snmp.Child(3, 0)
	SnmpInBadCommunityNames = snmp.Child(4, 0)
	SnmpInBadCommunityUses  = snmp.Child(5, 0)
	SnmpInASNParseErrs      = snmp.Child(6, 0)
	SnmpEnableAuthenTraps   = snmp.Child(30, 0)
	SnmpSilentDrops         = snmp.Child(31, 0)
	SnmpProxyDrops          = snmp.Child(32, 0)
)

// SNMP-FRAMEWORK-MIB snmpEngine group and SNMP-USER-BASED-SM-MIB usmStats
// (RFC 3411, RFC 3414), and snmpUnknownContexts (RFC 3413).
var (
	SnmpEngineID             = OID{1, 3, 6, 1, 6, 3, 10, 2, 1, 1, 0}
	SnmpEngineBoots          = OID{1, 3, 6, 1, 6, 3, 10, 2, 1, 2, 0}
	SnmpEngineTime           = OID{1, 3, 6, 1, 6, 3, 10, 2, 1, 3, 0}
	SnmpEngineMaxMessageSize = OID{1, 3, 6, 1, 6, 3, 10, 2, 1, 4, 0}

	UsmStatsUnsupportedSecLevels = OID{1, 3, 6, 1, 6, 3, 15, 1, 1, 1, 0}
	UsmStatsNotInTimeWindows     = OID{1, 3, 6, 1, 6, 3, 15, 1, 1, 2, 0}
	UsmStatsUnknownUserNames     = OID{1, 3, 6, 1, 6, 3, 15, 1, 1, 3, 0}
	UsmStatsUnknownEngineIDs     = OID{1, 3, 6, 1, 6, 3, 15, 1, 1, 4, 0}
	UsmStatsWrongDigests         = OID{1, 3, 6, 1, 6, 3, 15, 1, 1, 5, 0}
	UsmStatsDecryptionErrors     = OID{1, 3, 6, 1, 6, 3, 15, 1, 1, 6, 0}

	SnmpUnknownContexts = OID{1, 3, 6, 1, 6, 3, 12, 1, 5, 0}
)
