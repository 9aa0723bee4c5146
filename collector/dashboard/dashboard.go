// Package dashboard is the collector's web dashboard: a page and its
// script and style, embedded in the binary (there is no CDN to fetch
// from), that read the collector's API (/api/v1) and follow its event
// stream. The fleet overview is at /, a device's page at /#/device/NAME.
package dashboard

import (
	"embed"
	"io/fs"
	"net/http"
	"strings"
)

//go:embed assets
var assets embed.FS

// Handler serves the dashboard: index.html at /, the rest under /assets/.
func Handler() http.Handler {
	sub, _ := fs.Sub(assets, "assets")
	files := http.FileServerFS(sub)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.URL.Path == "/":
			w.Header().Set("Cache-Control", "no-cache")
			http.ServeFileFS(w, r, sub, "index.html")
		case strings.HasPrefix(r.URL.Path, "/assets/") && !strings.HasSuffix(r.URL.Path, "/"): // files, no listings
			w.Header().Set("Cache-Control", "no-cache")
			http.StripPrefix("/assets", files).ServeHTTP(w, r)
		default:
			http.NotFound(w, r)
		}
	})
}
