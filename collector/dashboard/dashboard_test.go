package dashboard

import (
	"net/http/httptest"
	"strings"
	"testing"
)

// The page at /, its assets under /assets/, and nothing else: no
// directory listing, no file outside the embedded assets.
func TestHandler(t *testing.T) {
	h := Handler()
	for _, tc := range []struct {
		path string
		code int
		has  string
	}{
		{"/", 200, "/assets/app.js"},
		{"/assets/app.js", 200, "EventSource"},
		{"/assets/style.css", 200, "--ok-fg"},
		{"/assets/", 404, ""},
		{"/assets/../dashboard.go", 404, ""},
		{"/assets/nothing.js", 404, ""},
		{"/other", 404, ""},
	} {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("GET", tc.path, nil))
		if rec.Code != tc.code || !strings.Contains(rec.Body.String(), tc.has) {
			t.Errorf("GET %s: %d %.60q, want %d with %q", tc.path, rec.Code, rec.Body.String(), tc.code, tc.has)
		}
	}
}
