// Package api is the collector's HTTP API under /api/v1: the fleet's
// devices with their latest verdicts, each device's EAR and history, an
// on-demand attestation, and the EAR signing key as a JWKS. Requests
// carry a bearer token: the read-only token reads, the admin token also
// acts. Errors are JSON objects {"error": "..."} with the HTTP status.
package api

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/sha256"
	"crypto/subtle"
	_ "embed"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/veraison/ear"

	"github.com/openriv/riv/collector/scheduler"
	"github.com/openriv/riv/collector/store"
	"github.com/openriv/riv/collector/verifier"
	"github.com/openriv/riv/pkg/endpoint"
)

// Fleet is what the API serves.
type Fleet interface {
	Devices() []scheduler.State
	Device(name string) (scheduler.State, bool)
	History(ctx context.Context, name string, limit int) ([]store.Record, error)
	Attest(ctx context.Context, name string) (scheduler.State, error)
	Posture() map[string]int
	Add(scheduler.Device) error
	Remove(name string) error
	Subscribe(ctx context.Context) <-chan scheduler.Event
}

var _ Fleet = (*scheduler.Scheduler)(nil)

// Server serves the API.
type Server struct {
	Fleet Fleet
	// AdminToken and ReadToken are the bearer tokens of the two roles.
	AdminToken, ReadToken string
	// EARKey is the public key EARs are signed with (for /keys).
	EARKey *ecdsa.PublicKey
	// Metrics, when set, is served at /metrics.
	Metrics http.Handler
	// NewDevice builds a device to poll from its endpoints.json (POST
	// /devices); nil refuses the request.
	NewDevice func(name string, ep *endpoint.Endpoints) (scheduler.Device, error)
	// AddRIM verifies an uploaded RIM and adds it to the reference values
	// (POST /rims): how many policies it was added to, or why none took
	// it. Nil refuses the request.
	AddRIM func(name string, raw []byte) (int, error)
	// Dashboard, when set, is the web dashboard, served at / to whoever
	// holds the read-only role; a browser signs in at /login with the
	// read-only (or admin) token and gets a session cookie that reads.
	Dashboard http.Handler
	// OpenDashboard signs in every browser that loads the dashboard
	// (riv-collector dev, on 127.0.0.1 only).
	OpenDashboard bool
	// ClientCerts admits a client by its TLS certificate instead of a
	// token (mTLS): one the server's tls.Config verified against its
	// client CAs has the admin role when an Organizational Unit of its
	// subject is "admin", else the read-only one.
	ClientCerts bool
}

// OpenAPI is the API's OpenAPI document, served at /api/v1/openapi.json;
// the tests check every handler against it.
//
//go:embed openapi.json
var OpenAPI []byte

// maxBody bounds a request body (the API takes none larger today).
const maxBody = 64 << 10

// Handler returns the API's HTTP handler.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /api/v1/devices", s.read(s.devices))
	mux.HandleFunc("GET /api/v1/devices/{name}", s.read(s.device))
	mux.HandleFunc("GET /api/v1/devices/{name}/ear", s.read(s.ear))
	mux.HandleFunc("GET /api/v1/devices/{name}/history", s.read(s.history))
	mux.HandleFunc("POST /api/v1/devices/{name}/attest", s.admin(s.attest))
	mux.HandleFunc("POST /api/v1/devices", s.admin(s.add))
	mux.HandleFunc("DELETE /api/v1/devices/{name}", s.admin(s.remove))
	mux.Handle("POST /api/v1/rims", http.MaxBytesHandler(s.admin(s.rim), maxRIM))
	mux.HandleFunc("GET /api/v1/posture", s.read(s.posture))
	mux.HandleFunc("GET /api/v1/events", s.read(s.events))
	mux.HandleFunc("GET /api/v1/keys", s.keys) // public: relying parties verify EARs with it
	mux.HandleFunc("GET /api/v1/openapi.json", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Write(OpenAPI)
	})
	if s.Metrics != nil {
		mux.Handle("GET /metrics", s.Metrics)
	}
	if s.Dashboard != nil {
		mux.Handle("GET /{$}", s.dashboard(s.Dashboard))
		mux.Handle("GET /assets/", s.dashboard(s.Dashboard))
		mux.HandleFunc("POST /login", s.login)
		mux.HandleFunc("POST /logout", s.logout)
	}
	mux.HandleFunc("/api/v1/", func(w http.ResponseWriter, r *http.Request) {
		fail(w, http.StatusNotFound, "no such resource: "+r.Method+" "+r.URL.Path)
	})
	return limitBody(mux)
}

// maxRIM bounds an uploaded RIM (a support RIM, an event log, is the
// largest).
const maxRIM = 16 << 20

// limitBody applies maxBody to every request but a RIM upload, which has
// its own bound.
func limitBody(h http.Handler) http.Handler {
	small := http.MaxBytesHandler(h, maxBody)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == "POST" && r.URL.Path == "/api/v1/rims" {
			h.ServeHTTP(w, r)
			return
		}
		small.ServeHTTP(w, r)
	})
}

// role is what a request's bearer token allows: 0 none, 1 read, 2 admin.
func (s *Server) role(r *http.Request) int {
	tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok || tok == "" {
		if s.session(r) {
			return 1
		}
		if s.ClientCerts && r.TLS != nil && len(r.TLS.VerifiedChains) > 0 {
			if slices.Contains(r.TLS.VerifiedChains[0][0].Subject.OrganizationalUnit, "admin") {
				return 2
			}
			return 1
		}
		return 0
	}
	switch {
	case tokenIs(tok, s.AdminToken):
		return 2
	case tokenIs(tok, s.ReadToken):
		return 1
	}
	return 0
}

// tokenIs compares a presented token with a configured one in constant
// time; an unset token matches nothing.
func tokenIs(got, want string) bool {
	return want != "" && subtle.ConstantTimeCompare([]byte(got), []byte(want)) == 1
}

func (s *Server) read(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if s.role(r) < 1 {
			w.Header().Set("WWW-Authenticate", `Bearer realm="riv-collector"`)
			fail(w, http.StatusUnauthorized, "a bearer token is required")
			return
		}
		h(w, r)
	}
}

func (s *Server) admin(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		switch s.role(r) {
		case 0:
			w.Header().Set("WWW-Authenticate", `Bearer realm="riv-collector"`)
			fail(w, http.StatusUnauthorized, "a bearer token is required")
		case 1:
			fail(w, http.StatusForbidden, "the read-only token cannot act; use the admin token")
		default:
			h(w, r)
		}
	}
}

// Device is a device as the API shows it.
type Device struct {
	Name        string           `json:"name"`
	Serial      string           `json:"serial,omitempty"`
	State       string           `json:"state"`            // "appraised", "unreachable", "pending"
	Status      string           `json:"status,omitempty"` // the latest verdict
	TrustVector *ear.TrustVector `json:"trust_vector,omitempty"`
	Reasons     []string         `json:"reasons,omitempty"`
	TPMs        []TPM            `json:"tpms,omitempty"`
	Appraised   *time.Time       `json:"appraised,omitempty"`
	Error       string           `json:"error,omitempty"`
	ResetCount  *uint32          `json:"reset_count,omitempty"`
	Polls       int              `json:"polls"`
	Policy      string           `json:"policy,omitempty"`
	// Collector is the collector that appraised it (several can share a
	// fleet on PostgreSQL).
	Collector string `json:"collector,omitempty"`
	// Inventory is the software the device lists, each component with
	// whether a signed RIM covers it (from the latest appraisal).
	Inventory []verifier.Component `json:"inventory,omitempty"`
}

// TPM is one TPM's verdict on a device with line cards.
type TPM struct {
	Name        string           `json:"name"`
	Status      string           `json:"status"`
	TrustVector *ear.TrustVector `json:"trust_vector"`
	Reasons     []string         `json:"reasons"`
}

func view(st scheduler.State) Device {
	d := Device{Name: st.Name, State: "pending", Polls: st.Polls, Policy: st.Policy, Collector: st.Collector}
	if r := st.Result; r != nil {
		t, rc := r.Time, r.Clock.ResetCount
		d.State, d.Serial, d.Status, d.TrustVector, d.Reasons, d.Appraised, d.ResetCount = "appraised", r.Serial, r.Status.String(), &r.Vector, r.Reasons, &t, &rc
		d.Inventory = r.Inventory
		for i := range r.TPMs {
			tp := &r.TPMs[i]
			d.TPMs = append(d.TPMs, TPM{Name: tp.Name, Status: tp.Status.String(), TrustVector: &tp.Vector, Reasons: tp.Reasons})
		}
	}
	if st.Unreachable != "" {
		d.State, d.Error = "unreachable", st.Unreachable
	}
	return d
}

func (s *Server) devices(w http.ResponseWriter, r *http.Request) {
	out := []Device{}
	for _, st := range s.Fleet.Devices() {
		out = append(out, view(st))
	}
	reply(w, http.StatusOK, map[string]any{"devices": out})
}

// DeviceSpec is the body of POST /devices: an endpoints.json object with
// an optional name. It is what the store keeps of a device added through
// the API (scheduler.Device.Spec, with the name filled in), to build it
// again after a restart.
type DeviceSpec struct {
	Name string `json:"name"`
	endpoint.Endpoints
}

// add starts polling a device given by its endpoints.json (the object,
// with an optional "name": its serial number otherwise).
func (s *Server) add(w http.ResponseWriter, r *http.Request) {
	if s.NewDevice == nil {
		fail(w, http.StatusMethodNotAllowed, "this collector takes its devices from its configuration")
		return
	}
	var body DeviceSpec
	dec := json.NewDecoder(r.Body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(&body); err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			fail(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("the body is larger than %d bytes", maxBody))
			return
		}
		fail(w, http.StatusBadRequest, "the body is not an endpoints.json object: "+err.Error())
		return
	}
	name := body.Name
	if name == "" {
		name = body.Serial
	}
	if name == "" || len(name) > 128 || strings.ContainsAny(name, "/\x00") {
		fail(w, http.StatusBadRequest, "name: want 1-128 characters without '/' (or a serial number)")
		return
	}
	d, err := s.NewDevice(name, &body.Endpoints)
	if err != nil {
		fail(w, http.StatusBadRequest, err.Error())
		return
	}
	body.Name = name
	d.Spec, _ = json.Marshal(body)
	if err := s.Fleet.Add(d); err != nil {
		code := http.StatusInternalServerError
		if errors.Is(err, scheduler.ErrExists) {
			code = http.StatusConflict
		}
		fail(w, code, err.Error())
		return
	}
	st, _ := s.Fleet.Device(name)
	w.Header().Set("Location", "/api/v1/devices/"+name)
	reply(w, http.StatusCreated, view(st))
}

// rim takes an uploaded RIM: verified before it is used.
func (s *Server) rim(w http.ResponseWriter, r *http.Request) {
	if s.AddRIM == nil {
		fail(w, http.StatusMethodNotAllowed, "this collector takes no RIM uploads")
		return
	}
	raw, err := io.ReadAll(r.Body)
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			fail(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("a RIM is at most %d bytes", maxRIM))
			return
		}
		fail(w, http.StatusBadRequest, err.Error())
		return
	}
	if len(raw) == 0 {
		fail(w, http.StatusBadRequest, "the body is empty: want the RIM's bytes (COSE_Sign1 CoSWID or CoRIM, or a support RIM)")
		return
	}
	name := r.URL.Query().Get("name")
	if name == "" {
		name = "upload"
	}
	n, err := s.AddRIM(name, raw)
	if err != nil {
		fail(w, http.StatusUnprocessableEntity, err.Error())
		return
	}
	reply(w, http.StatusOK, map[string]any{"policies": n})
}

// remove stops polling a device; its history stays.
func (s *Server) remove(w http.ResponseWriter, r *http.Request) {
	if err := s.Fleet.Remove(r.PathValue("name")); err != nil {
		code := http.StatusInternalServerError
		switch {
		case errors.Is(err, scheduler.ErrNoDevice):
			code = http.StatusNotFound
		case errors.Is(err, scheduler.ErrFixed):
			code = http.StatusConflict
		}
		fail(w, code, err.Error())
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// events streams the fleet's state changes as server-sent events (one
// "event:" per kind, the JSON of scheduler.Event as data), with a comment
// line every 15 s so that proxies keep the stream open.
func (s *Server) events(w http.ResponseWriter, r *http.Request) {
	fl, ok := w.(http.Flusher)
	if !ok {
		fail(w, http.StatusInternalServerError, "streaming is not supported here")
		return
	}
	// A stream outlives the server's write timeout.
	http.NewResponseController(w).SetWriteDeadline(time.Time{})
	ch := s.Fleet.Subscribe(r.Context())
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusOK)
	fmt.Fprint(w, ": riv-collector events\n\n")
	fl.Flush()
	tick := time.NewTicker(15 * time.Second)
	defer tick.Stop()
	for {
		select {
		case ev, open := <-ch:
			if !open {
				return
			}
			b, _ := json.Marshal(ev)
			fmt.Fprintf(w, "event: %s\ndata: %s\n\n", ev.Kind, b)
		case <-tick.C:
			fmt.Fprint(w, ": keep-alive\n\n")
		case <-r.Context().Done():
			return
		}
		fl.Flush()
	}
}

// posture is the fleet by state.
func (s *Server) posture(w http.ResponseWriter, r *http.Request) {
	p := s.Fleet.Posture()
	total := 0
	for _, n := range p {
		total += n
	}
	reply(w, http.StatusOK, map[string]any{"devices": total, "by_state": p})
}

func (s *Server) lookup(w http.ResponseWriter, r *http.Request) (scheduler.State, bool) {
	st, ok := s.Fleet.Device(r.PathValue("name"))
	if !ok {
		fail(w, http.StatusNotFound, fmt.Sprintf("no device %q", r.PathValue("name")))
	}
	return st, ok
}

func (s *Server) device(w http.ResponseWriter, r *http.Request) {
	if st, ok := s.lookup(w, r); ok {
		reply(w, http.StatusOK, view(st))
	}
}

func (s *Server) ear(w http.ResponseWriter, r *http.Request) {
	st, ok := s.lookup(w, r)
	if !ok {
		return
	}
	var tok []byte
	if st.Result != nil {
		tok = st.Result.EAR
		if len(tok) == 0 {
			// A device's state keeps its latest result without the EAR
			// once the store has it: the latest record's.
			recs, err := s.Fleet.History(r.Context(), st.Name, 1)
			if err != nil {
				fail(w, http.StatusInternalServerError, "reading the latest result: "+err.Error())
				return
			}
			if len(recs) > 0 {
				tok = []byte(recs[0].EAR)
			}
		}
	}
	if len(tok) == 0 {
		fail(w, http.StatusNotFound, fmt.Sprintf("device %q has no attestation result yet", st.Name))
		return
	}
	w.Header().Set("Content-Type", "application/eat+jwt")
	w.Write(tok)
}

func (s *Server) history(w http.ResponseWriter, r *http.Request) {
	if _, ok := s.lookup(w, r); !ok {
		return
	}
	limit := 100
	if v := r.URL.Query().Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 10000 {
			fail(w, http.StatusBadRequest, "limit: want 1 to 10000")
			return
		}
		limit = n
	}
	recs, err := s.Fleet.History(r.Context(), r.PathValue("name"), limit)
	if err != nil {
		fail(w, http.StatusInternalServerError, err.Error())
		return
	}
	out := []HistoryEntry{}
	for _, rec := range recs {
		out = append(out, HistoryEntry{rec.ID, rec.Time, rec.Status, rec.Vector, rec.Reasons, rec.ResetCount, rec.Rebooted, rec.Superseded, rec.Policy, rec.Evidence, rec.EAR})
	}
	reply(w, http.StatusOK, map[string]any{"device": r.PathValue("name"), "history": out})
}

// HistoryEntry is one kept appraisal of a device (GET .../history).
type HistoryEntry struct {
	ID         int64           `json:"id"`
	Time       time.Time       `json:"time"`
	Status     string          `json:"status"`
	Vector     ear.TrustVector `json:"trust_vector"`
	Reasons    []string        `json:"reasons"`
	ResetCount uint32          `json:"reset_count"`
	Rebooted   bool            `json:"rebooted"`
	Superseded string          `json:"superseded,omitempty"`
	Policy     string          `json:"policy,omitempty"`
	Evidence   string          `json:"evidence,omitempty"`
	EAR        string          `json:"ear,omitempty"`
}

func (s *Server) attest(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Minute)
	defer cancel()
	st, err := s.Fleet.Attest(ctx, r.PathValue("name"))
	switch {
	case err != nil && errors.Is(err, context.DeadlineExceeded):
		fail(w, http.StatusGatewayTimeout, "the attestation did not finish in time")
	case errors.Is(err, scheduler.ErrElsewhere):
		fail(w, http.StatusConflict, err.Error())
	case err != nil:
		fail(w, http.StatusNotFound, err.Error())
	default:
		reply(w, http.StatusOK, view(st))
	}
}

// keys is the JWKS of the EAR signing key (RFC 7517), with its RFC 7638
// thumbprint as kid.
func (s *Server) keys(w http.ResponseWriter, r *http.Request) {
	k := s.EARKey
	if k == nil {
		reply(w, http.StatusOK, map[string]any{"keys": []any{}})
		return
	}
	crv, alg := "P-256", "ES256"
	if k.Curve == elliptic.P384() {
		crv, alg = "P-384", "ES384"
	}
	size := (k.Curve.Params().BitSize + 7) / 8
	enc := base64.RawURLEncoding
	x, y := enc.EncodeToString(k.X.FillBytes(make([]byte, size))), enc.EncodeToString(k.Y.FillBytes(make([]byte, size)))
	tp := sha256.Sum256([]byte(`{"crv":"` + crv + `","kty":"EC","x":"` + x + `","y":"` + y + `"}`))
	reply(w, http.StatusOK, map[string]any{"keys": []map[string]string{{"kty": "EC", "crv": crv, "x": x, "y": y, "alg": alg, "use": "sig", "kid": enc.EncodeToString(tp[:])}}})
}

func reply(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(v)
}

func fail(w http.ResponseWriter, status int, msg string) {
	reply(w, status, map[string]string{"error": msg})
}
