package api

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Client speaks to a collector's API: what rivctl and scripts use.
type Client struct {
	// URL is the collector's base URL (http://127.0.0.1:P of riv-collector
	// dev, https://... of serve), without /api/v1.
	URL string
	// Token is the bearer token sent with every request.
	Token string
	HTTP  *http.Client
}

// NewClient returns a client of the collector at base with token; tlsConf
// (nil: the system's roots) verifies an HTTPS collector.
func NewClient(base, token string, tlsConf *tls.Config) (*Client, error) {
	u, err := url.Parse(base)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("collector URL %q: want http(s)://HOST:PORT", base)
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	if tlsConf != nil {
		tr.TLSClientConfig = tlsConf
	}
	return &Client{URL: strings.TrimRight(base, "/"), Token: token, HTTP: &http.Client{Transport: tr, Timeout: 3 * time.Minute}}, nil
}

// StatusError is an error reply of the API: its HTTP status and message.
type StatusError struct {
	Status  int
	Message string
}

func (e *StatusError) Error() string {
	return fmt.Sprintf("collector: %d %s: %s", e.Status, http.StatusText(e.Status), e.Message)
}

// do sends a request and decodes a JSON reply into out (raw bytes when
// out is a *[]byte).
func (c *Client) do(ctx context.Context, method, path string, body []byte, out any) error {
	req, err := http.NewRequestWithContext(ctx, method, c.URL+path, bytes.NewReader(body))
	if err != nil {
		return err
	}
	if c.Token != "" {
		req.Header.Set("Authorization", "Bearer "+c.Token)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/octet-stream")
	}
	resp, err := c.HTTP.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	// The API's replies are small; a reply beyond this is not the API.
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return fmt.Errorf("collector: %s %s: %w", method, path, err)
	}
	if resp.StatusCode >= 300 {
		var e struct{ Error string }
		if json.Unmarshal(raw, &e) != nil || e.Error == "" {
			e.Error = strings.TrimSpace(string(raw))
			if len(e.Error) > 200 {
				e.Error = e.Error[:200] + "..."
			}
		}
		return &StatusError{Status: resp.StatusCode, Message: e.Error}
	}
	if b, ok := out.(*[]byte); ok {
		*b = raw
		return nil
	}
	if out != nil {
		if err := json.Unmarshal(raw, out); err != nil {
			return fmt.Errorf("collector: %s %s: the reply is not the API's JSON: %w", method, path, err)
		}
	}
	return nil
}

func devicePath(name string) string { return "/api/v1/devices/" + url.PathEscape(name) }

// Devices lists the fleet.
func (c *Client) Devices(ctx context.Context) ([]Device, error) {
	var v struct{ Devices []Device }
	err := c.do(ctx, "GET", "/api/v1/devices", nil, &v)
	return v.Devices, err
}

// Device returns one device's latest state.
func (c *Client) Device(ctx context.Context, name string) (Device, error) {
	var d Device
	err := c.do(ctx, "GET", devicePath(name), nil, &d)
	return d, err
}

// Attest re-attests a device now and returns its new state (admin).
func (c *Client) Attest(ctx context.Context, name string) (Device, error) {
	var d Device
	err := c.do(ctx, "POST", devicePath(name)+"/attest", nil, &d)
	return d, err
}

// History returns a device's kept appraisals, newest first, at most limit.
func (c *Client) History(ctx context.Context, name string, limit int) ([]HistoryEntry, error) {
	var v struct{ History []HistoryEntry }
	err := c.do(ctx, "GET", devicePath(name)+"/history?limit="+strconv.Itoa(limit), nil, &v)
	return v.History, err
}

// EAR returns a device's latest signed attestation result (a JWT).
func (c *Client) EAR(ctx context.Context, name string) ([]byte, error) {
	var b []byte
	err := c.do(ctx, "GET", devicePath(name)+"/ear", nil, &b)
	return b, err
}

// UploadRIM uploads a RIM (admin): how many policy sets took it.
func (c *Client) UploadRIM(ctx context.Context, name string, raw []byte) (int, error) {
	var v struct{ Policies int }
	err := c.do(ctx, "POST", "/api/v1/rims?name="+url.QueryEscape(name), raw, &v)
	return v.Policies, err
}
