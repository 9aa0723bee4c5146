module github.com/openriv/riv

go 1.26

require (
	github.com/fxamacker/cbor/v2 v2.10.0
	github.com/google/go-attestation v0.6.4
	github.com/google/go-cmp v0.7.0
	github.com/google/go-tpm v0.9.8
	github.com/google/go-tpm-tools v0.4.10
)

require (
	github.com/x448/float16 v0.8.4 // indirect
	golang.org/x/sys v0.45.0 // indirect
)
