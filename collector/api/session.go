package api

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"strings"
	"time"
)

// The dashboard's session: a cookie that carries the read-only role. Its
// value is derived from the read-only token (never the token itself), so
// it changes when the token does and tells nothing about it.
const (
	sessionCookie = "riv_session"
	sessionAge    = 12 * time.Hour
	maxLoginBody  = 4 << 10
)

func (s *Server) sessionValue() string {
	if s.ReadToken == "" {
		return ""
	}
	m := hmac.New(sha256.New, []byte(s.ReadToken))
	m.Write([]byte("riv-collector dashboard session v1"))
	return hex.EncodeToString(m.Sum(nil))
}

// session reports whether r carries a valid session cookie.
func (s *Server) session(r *http.Request) bool {
	c, err := r.Cookie(sessionCookie)
	return err == nil && tokenIs(c.Value, s.sessionValue())
}

func (s *Server) setSession(w http.ResponseWriter, r *http.Request, age time.Duration) {
	v := s.sessionValue()
	if age <= 0 {
		v = ""
	}
	http.SetCookie(w, &http.Cookie{Name: sessionCookie, Value: v, Path: "/", MaxAge: int(age.Seconds()),
		HttpOnly: true, Secure: r.TLS != nil, SameSite: http.SameSiteStrictMode})
}

// dashboard serves the dashboard's page and assets. They hold no fleet
// data (the page reads the API), so they are served to anyone; with
// OpenDashboard the browser is signed in on the way.
func (s *Server) dashboard(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if s.OpenDashboard && !s.session(r) {
			s.setSession(w, r, sessionAge)
		}
		w.Header().Set("Content-Security-Policy", "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'")
		w.Header().Set("X-Content-Type-Options", "nosniff")
		w.Header().Set("Referrer-Policy", "no-referrer")
		h.ServeHTTP(w, r)
	})
}

// login signs a browser in: a form (or JSON-less body) with the token;
// either token gives a read-only session.
func (s *Server) login(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, maxLoginBody)
	if err := r.ParseForm(); err != nil {
		fail(w, http.StatusBadRequest, "the body is not a form: "+err.Error())
		return
	}
	tok := strings.TrimSpace(r.PostForm.Get("token"))
	if !tokenIs(tok, s.ReadToken) && !tokenIs(tok, s.AdminToken) {
		fail(w, http.StatusUnauthorized, "not a token of this collector")
		return
	}
	s.setSession(w, r, sessionAge)
	http.Redirect(w, r, "/", http.StatusSeeOther)
}

func (s *Server) logout(w http.ResponseWriter, r *http.Request) {
	s.setSession(w, r, 0)
	http.Redirect(w, r, "/", http.StatusSeeOther)
}
