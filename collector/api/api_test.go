package api

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers/legacy"
	"github.com/veraison/ear"

	"github.com/openriv/riv/collector/scheduler"
	"github.com/openriv/riv/collector/store"
	"github.com/openriv/riv/collector/verifier"
	"github.com/openriv/riv/pkg/endpoint"
)

// fakeFleet has a device of each state: appraised (with line cards),
// unreachable and pending.
type fakeFleet struct{ states map[string]scheduler.State }

func newFakeFleet() *fakeFleet {
	aff := ear.TrustVector{InstanceIdentity: ear.TrustworthyInstanceClaim, Executables: ear.ApprovedRuntimeClaim}
	bad := aff
	bad.Executables = ear.ContraindicatedRuntimeClaim
	r := &verifier.Result{Device: "rtr1", Serial: "RTR-0001", Status: ear.TrustTierContraindicated, Vector: bad, Reasons: []string{"lc1: executables: PCR 4"},
		Time: time.Now(), EAR: []byte("eyJhbGciOiJFUzI1NiJ9.e30.c2ln"),
		TPMs: []verifier.TPMResult{{Name: "tpm0", Status: ear.TrustTierAffirming, Vector: aff}, {Name: "lc1", Status: ear.TrustTierContraindicated, Vector: bad, Reasons: []string{"executables: PCR 4"}}}}
	return &fakeFleet{states: map[string]scheduler.State{
		"rtr1": {Name: "rtr1", Result: r, LastPoll: time.Now(), Polls: 3},
		"rtr2": {Name: "rtr2", Unreachable: "netconf tls 127.0.0.1:1: TCP connection refused", Polls: 1},
		"rtr3": {Name: "rtr3"},
	}}
}

func (f *fakeFleet) Devices() []scheduler.State {
	return []scheduler.State{f.states["rtr1"], f.states["rtr2"], f.states["rtr3"]}
}
func (f *fakeFleet) Device(name string) (scheduler.State, bool) {
	s, ok := f.states[name]
	return s, ok
}
func (f *fakeFleet) History(_ context.Context, name string, limit int) ([]store.Record, error) {
	if name == "rtr3" {
		return nil, errors.New("the store is closed")
	}
	return []store.Record{{ID: 2, Device: name, Time: time.Now(), Status: "contraindicated", Reasons: []string{"x"}, EAR: "eyJhbGciOiJFUzI1NiJ9.e30.c3RvcmU"}, {ID: 1, Device: name, Time: time.Now(), Status: "affirming"}}, nil
}

// TestEARFromStore: a device whose state keeps its latest result without
// the EAR (the store has it) is served the latest stored record's; the
// store failing is a 500, not a missing result.
func TestEARFromStore(t *testing.T) {
	f := newFakeFleet()
	for _, name := range []string{"rtr1", "rtr3"} {
		st := f.states[name]
		r := *f.states["rtr1"].Result
		r.EAR = nil
		st.Result = &r
		f.states[name] = st
	}
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	h := (&Server{Fleet: f, AdminToken: "admin-token", ReadToken: "read-token", EARKey: &key.PublicKey}).Handler()
	for _, c := range []struct {
		device string
		code   int
		body   string
	}{
		{"rtr1", 200, "eyJhbGciOiJFUzI1NiJ9.e30.c3RvcmU"},
		{"rtr3", 500, ""},
	} {
		req := httptest.NewRequest("GET", "/api/v1/devices/"+c.device+"/ear", nil)
		req.Header.Set("Authorization", "Bearer read-token")
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		if w.Code != c.code || c.body != "" && w.Body.String() != c.body {
			t.Errorf("GET %s/ear: %d %q, want %d %q", c.device, w.Code, w.Body.String(), c.code, c.body)
		}
	}
}
func (f *fakeFleet) Attest(ctx context.Context, name string) (scheduler.State, error) {
	if name == "slow" {
		<-ctx.Done()
		return scheduler.State{}, context.DeadlineExceeded
	}
	s, ok := f.states[name]
	if !ok {
		return s, errors.New("no device " + name)
	}
	return s, nil
}
func (f *fakeFleet) Subscribe(ctx context.Context) <-chan scheduler.Event {
	ch := make(chan scheduler.Event, 2)
	ch <- scheduler.Event{Kind: "verdict", Device: "rtr1", Status: "contraindicated", Previous: "affirming", Time: time.Now()}
	ch <- scheduler.Event{Kind: "reboot", Device: "rtr1", Status: "affirming", Time: time.Now()}
	close(ch)
	return ch
}

func (f *fakeFleet) Posture() map[string]int {
	return map[string]int{"contraindicated": 1, "unreachable": 1, "pending": 1}
}
func (f *fakeFleet) Add(d scheduler.Device) error {
	if _, dup := f.states[d.Name]; dup {
		return fmt.Errorf("%s: %w", d.Name, scheduler.ErrExists)
	}
	f.states[d.Name] = scheduler.State{Name: d.Name}
	return nil
}
func (f *fakeFleet) Remove(name string) error {
	if _, ok := f.states[name]; !ok {
		return fmt.Errorf("%s: %w", name, scheduler.ErrNoDevice)
	}
	delete(f.states, name)
	return nil
}

// TestConformance runs every operation of the OpenAPI document — the
// good requests and the failing ones — through the handlers, and
// validates each request and response against the document: status
// documented, body of the documented schema (no undocumented field).
func TestConformance(t *testing.T) {
	ctx := context.Background()
	doc, err := openapi3.NewLoader().LoadFromData(OpenAPI)
	if err != nil {
		t.Fatal(err)
	}
	if err := doc.Validate(ctx); err != nil {
		t.Fatalf("the OpenAPI document is not valid: %v", err)
	}
	router, err := legacy.NewRouter(doc)
	if err != nil {
		t.Fatal(err)
	}
	openapi3filter.RegisterBodyDecoder("application/eat+jwt", openapi3filter.PlainBodyDecoder)
	openapi3filter.RegisterBodyDecoder("text/event-stream", openapi3filter.PlainBodyDecoder)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	srv := &Server{Fleet: newFakeFleet(), AdminToken: "admin-token", ReadToken: "read-token", EARKey: &key.PublicKey,
		NewDevice: func(name string, ep *endpoint.Endpoints) (scheduler.Device, error) {
			if ep.NetconfTLS == "" && ep.NetconfSSH == "" {
				return scheduler.Device{}, errors.New("no NETCONF address")
			}
			return scheduler.Device{Name: name}, nil
		},
		AddRIM: func(name string, raw []byte) (int, error) {
			if !bytes.HasPrefix(raw, []byte("signed")) {
				return 0, errors.New("not signed by a trusted vendor")
			}
			return 1, nil
		}}
	h := srv.Handler()
	const adm, rd = "admin-token", "read-token"
	ep := `{"name": "rtr9", "netconf_tls": "127.0.0.1:6513", "serial": "RTR-9"}`
	cases := []struct {
		method, path, token, body string
		want                      int
	}{
		{"GET", "/api/v1/devices", rd, "", 200},
		{"GET", "/api/v1/devices", "", "", 401},
		{"GET", "/api/v1/devices/rtr1", rd, "", 200},
		{"GET", "/api/v1/devices/rtr2", rd, "", 200},
		{"GET", "/api/v1/devices/rtr3", adm, "", 200},
		{"GET", "/api/v1/devices/nope", rd, "", 404},
		{"GET", "/api/v1/devices/rtr1/ear", rd, "", 200},
		{"GET", "/api/v1/devices/rtr3/ear", rd, "", 404},
		{"GET", "/api/v1/devices/rtr1/history", rd, "", 200},
		{"GET", "/api/v1/devices/rtr1/history?limit=1", rd, "", 200},
		{"GET", "/api/v1/devices/rtr3/history", rd, "", 500},
		{"GET", "/api/v1/devices/nope/history", rd, "", 404},
		{"POST", "/api/v1/devices/rtr1/attest", adm, "", 200},
		{"POST", "/api/v1/devices/rtr1/attest", rd, "", 403},
		{"POST", "/api/v1/devices/rtr1/attest", "", "", 401},
		{"POST", "/api/v1/devices", adm, ep, 201},
		{"POST", "/api/v1/devices", adm, ep, 409},
		{"POST", "/api/v1/devices", adm, `{"name": "rtr8"}`, 400},
		{"POST", "/api/v1/devices", rd, ep, 403},
		{"DELETE", "/api/v1/devices/rtr9", adm, "", 204},
		{"DELETE", "/api/v1/devices/rtr9", adm, "", 404},
		{"DELETE", "/api/v1/devices/rtr1", rd, "", 403},
		{"POST", "/api/v1/rims?name=image.cose", adm, "signed by the vendor", 200},
		{"POST", "/api/v1/rims", adm, "garbage", 422},
		{"POST", "/api/v1/rims", adm, "", 400},
		{"POST", "/api/v1/rims", rd, "signed", 403},
		{"GET", "/api/v1/posture", rd, "", 200},
		{"GET", "/api/v1/events", rd, "", 200},
		{"GET", "/api/v1/events", "", "", 401},
		{"GET", "/api/v1/keys", "", "", 200},
		{"GET", "/api/v1/openapi.json", "", "", 200},
	}
	seen := map[string]bool{}
	for _, c := range cases {
		t.Run(c.method+" "+c.path+" "+c.token, func(t *testing.T) {
			req := httptest.NewRequest(c.method, c.path, strings.NewReader(c.body))
			switch {
			case strings.HasPrefix(c.path, "/api/v1/rims"):
				req.Header.Set("Content-Type", "application/octet-stream")
			case c.body != "":
				req.Header.Set("Content-Type", "application/json")
			}
			if c.token != "" {
				req.Header.Set("Authorization", "Bearer "+c.token)
			}
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			if rec.Code != c.want {
				t.Fatalf("status %d, want %d: %s", rec.Code, c.want, rec.Body)
			}
			vreq := httptest.NewRequest(c.method, c.path, strings.NewReader(c.body))
			vreq.Header = req.Header.Clone()
			route, params, err := router.FindRoute(vreq)
			if err != nil {
				t.Fatalf("not in the OpenAPI document: %v", err)
			}
			seen[route.Method+" "+route.Path] = true
			in := &openapi3filter.RequestValidationInput{Request: vreq, PathParams: params, Route: route,
				Options: &openapi3filter.Options{AuthenticationFunc: openapi3filter.NoopAuthenticationFunc}}
			if c.want < 400 {
				if err := openapi3filter.ValidateRequest(ctx, in); err != nil {
					t.Fatalf("the request does not conform: %v", err)
				}
			}
			out := &openapi3filter.ResponseValidationInput{RequestValidationInput: in, Status: rec.Code, Header: rec.Header(),
				Options: &openapi3filter.Options{IncludeResponseStatus: true}}
			out.SetBodyBytes(bytes.Clone(rec.Body.Bytes()))
			if err := openapi3filter.ValidateResponse(ctx, out); err != nil {
				t.Fatalf("the response does not conform: %v\n%s", err, rec.Body)
			}
		})
	}
	// Every documented operation was exercised.
	for path, item := range doc.Paths.Map() {
		for method := range item.Operations() {
			if !seen[method+" "+path] {
				t.Errorf("%s %s is documented but not tested", method, path)
			}
		}
	}
	// The stream carries the events, one per kind.
	rec := httptest.NewRecorder()
	req := httptest.NewRequest("GET", "/api/v1/events", nil)
	req.Header.Set("Authorization", "Bearer "+rd)
	h.ServeHTTP(rec, req)
	if body := rec.Body.String(); !strings.Contains(body, "event: verdict\ndata: {\"kind\":\"verdict\",\"device\":\"rtr1\",\"status\":\"contraindicated\",\"previous\":\"affirming\"") ||
		!strings.Contains(body, "event: reboot\n") {
		t.Errorf("event stream:\n%s", body)
	}
	// An upload larger than a RIM can be is refused before it is read.
	big := httptest.NewRequest("POST", "/api/v1/rims", bytes.NewReader(make([]byte, maxRIM+1)))
	big.Header.Set("Authorization", "Bearer "+adm)
	rec = httptest.NewRecorder()
	h.ServeHTTP(rec, big)
	if rec.Code != 413 {
		t.Errorf("a %d-byte upload: %d %s", maxRIM+1, rec.Code, rec.Body)
	}
	// An undocumented path is a JSON 404.
	rec = httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/api/v1/nothing", nil))
	if rec.Code != 404 || !strings.Contains(rec.Body.String(), `"error"`) {
		t.Errorf("undocumented path: %d %s", rec.Code, rec.Body)
	}
}

// The dashboard's session: either token signs a browser in; the cookie
// reads but never acts; a wrong token, or no cookie, reads nothing;
// OpenDashboard signs in whoever loads the page.
func TestDashboardSession(t *testing.T) {
	for _, open := range []bool{false, true} {
		srv := &Server{Fleet: newFakeFleet(), AdminToken: "admin-token", ReadToken: "read-token",
			Dashboard: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("page")) }), OpenDashboard: open}
		h := srv.Handler()
		do := func(method, path, body string, cookie *http.Cookie) *httptest.ResponseRecorder {
			req := httptest.NewRequest(method, path, strings.NewReader(body))
			if body != "" {
				req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			}
			if cookie != nil {
				req.AddCookie(cookie)
			}
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			return rec
		}
		cookieOf := func(rec *httptest.ResponseRecorder) *http.Cookie {
			for _, c := range rec.Result().Cookies() {
				if c.Name == sessionCookie && c.Value != "" {
					return c
				}
			}
			return nil
		}
		page := do("GET", "/", "", nil)
		if page.Code != 200 || page.Header().Get("Content-Security-Policy") == "" {
			t.Errorf("open=%v: GET / = %d, CSP %q", open, page.Code, page.Header().Get("Content-Security-Policy"))
		}
		if got := cookieOf(page) != nil; got != open {
			t.Errorf("open=%v: GET / set a session: %v", open, got)
		}
		if rec := do("POST", "/login", "token=wrong", nil); rec.Code != 401 || cookieOf(rec) != nil {
			t.Errorf("open=%v: login with a wrong token: %d", open, rec.Code)
		}
		for _, tok := range []string{"read-token", "admin-token"} {
			rec := do("POST", "/login", "token="+tok, nil)
			c := cookieOf(rec)
			if rec.Code != http.StatusSeeOther || c == nil || !c.HttpOnly || c.SameSite != http.SameSiteStrictMode || strings.Contains(c.Value, tok) {
				t.Fatalf("open=%v: login with %s: %d %+v", open, tok, rec.Code, c)
			}
			if rec := do("GET", "/api/v1/devices", "", c); rec.Code != 200 {
				t.Errorf("open=%v: GET /devices with the session: %d", open, rec.Code)
			}
			if rec := do("POST", "/api/v1/devices/rtr-1/attest", "", c); rec.Code != 403 {
				t.Errorf("open=%v: attest with the session (from %s): %d, want 403", open, tok, rec.Code)
			}
		}
		if rec := do("GET", "/api/v1/devices", "", &http.Cookie{Name: sessionCookie, Value: "forged"}); rec.Code != 401 {
			t.Errorf("open=%v: a forged session: %d", open, rec.Code)
		}
		if rec := do("GET", "/api/v1/devices", "", nil); rec.Code != 401 {
			t.Errorf("open=%v: no session: %d", open, rec.Code)
		}
	}
}
