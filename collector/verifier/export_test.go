package verifier

// ForgetVerdicts empties the cache of verdicts on certificates, as their
// expiry does: the next poll of every device must verify its
// certificates again.
func (v *Verifier) ForgetVerdicts() {
	v.mu.Lock()
	defer v.mu.Unlock()
	clear(v.verified)
}
