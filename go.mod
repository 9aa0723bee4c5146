module github.com/openriv/riv

go 1.26

require (
	github.com/fxamacker/cbor/v2 v2.10.0 // indirect
	github.com/google/go-attestation v0.6.4 // indirect
	github.com/google/go-cmp v0.7.0 // indirect
	github.com/google/go-tpm v0.9.8 // indirect
	github.com/google/go-tpm-tools v0.4.10 // indirect
	github.com/x448/float16 v0.8.4 // indirect
	gopkg.in/yaml.v3 v3.0.1 // indirect
)
