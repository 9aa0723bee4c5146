package snmp

import (
	"crypto/aes"
	"crypto/hmac"
	"crypto/sha256"
	"errors"
	"fmt"
)

// User-based Security Model (RFC 3414) with HMAC-SHA-256-192
// (usmHMAC192SHA256AuthProtocol, RFC 7860) and AES-128 in CFB mode
// (usmAesCfb128Protocol, RFC 3826) — the only levels this agent speaks:
// every request other than engine discovery must be authPriv.

const (
	authParamLen = 24 // HMAC-SHA-256 truncated to 192 bits
	privParamLen = 8  // the AES salt
	minPassLen   = 8  // RFC 3414 §11.2
)

// User is an SNMPv3 user with its passwords. The keys are localized to
// the engine when the server starts; the passwords are not kept.
type User struct {
	Name         string `yaml:"name"`
	AuthPassword Secret `yaml:"auth-password"`
	PrivPassword Secret `yaml:"priv-password"`
}

// Secret is a password that never prints.
type Secret string

func (Secret) String() string                 { return "<secret>" }
func (Secret) GoString() string               { return "<secret>" }
func (s Secret) MarshalText() ([]byte, error) { return []byte("<secret>"), nil }

type userKeys struct {
	auth []byte // localized SHA-256 key
	priv []byte // AES-128 key: the first 16 bytes of the localized key
}

// passwordToKey is RFC 3414 A.2.1 with SHA-256: hash the password
// repeated to 1 MiB, then localize it to the engine.
func passwordToKey(password string, engineID []byte) []byte {
	h := sha256.New()
	buf := make([]byte, 64)
	p := []byte(password)
	for i, k := 0, 0; i < 1<<20; i += len(buf) {
		for j := range buf {
			buf[j] = p[k%len(p)]
			k++
		}
		h.Write(buf)
	}
	ku := h.Sum(nil)
	h.Reset()
	h.Write(ku)
	h.Write(engineID)
	h.Write(ku)
	return h.Sum(nil)
}

func localize(u User, engineID []byte) (userKeys, error) {
	if len(u.AuthPassword) < minPassLen || len(u.PrivPassword) < minPassLen {
		return userKeys{}, fmt.Errorf("snmp user %q: passwords must have at least %d characters", u.Name, minPassLen)
	}
	return userKeys{auth: passwordToKey(string(u.AuthPassword), engineID), priv: passwordToKey(string(u.PrivPassword), engineID)[:16]}, nil
}

func authDigest(key, msg []byte) []byte {
	m := hmac.New(sha256.New, key)
	m.Write(msg)
	return m.Sum(nil)[:authParamLen]
}

// cfb runs AES-128-CFB (RFC 3826 §3.1.3, IV = boots || time || salt) in
// place; CFB with a 128-bit segment is what crypto/cipher's deprecated
// CFB did, written out here.
func cfb(key []byte, boots, engineTime uint32, salt []byte, data []byte, decrypt bool) error {
	if len(salt) != privParamLen {
		return errors.New("privacy parameters are not an 8-byte salt")
	}
	blk, err := aes.NewCipher(key)
	if err != nil {
		return err
	}
	var iv [16]byte
	iv[0], iv[1], iv[2], iv[3] = byte(boots>>24), byte(boots>>16), byte(boots>>8), byte(boots)
	iv[4], iv[5], iv[6], iv[7] = byte(engineTime>>24), byte(engineTime>>16), byte(engineTime>>8), byte(engineTime)
	copy(iv[8:], salt)
	var ks [16]byte
	for off := 0; off < len(data); off += 16 {
		blk.Encrypt(ks[:], iv[:])
		end := min(off+16, len(data))
		for i := off; i < end; i++ {
			c := data[i]
			data[i] ^= ks[i-off]
			if decrypt {
				iv[i-off] = c
			} else {
				iv[i-off] = data[i]
			}
		}
	}
	return nil
}
