package atlasapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/cmkdb/cmkdb/internal/controlplane"
)

const (
	mediaJSON = "application/json"
	// mediaAtlasDefault is the v2 media type answered when the client names
	// no version.
	mediaAtlasDefault = "application/vnd.atlas.2023-01-01+json"
	// maxBody bounds request bodies: the largest legitimate one (a GCP
	// service account key inside a PATCH) is a few KiB.
	maxBody = 1 << 20
	// Atlas's page size default and cap.
	defaultItemsPerPage = 100
	maxItemsPerPage     = 500
)

// call is one request in flight.
type call struct {
	h      *handler
	w      http.ResponseWriter
	r      *http.Request
	prefix string // version prefix the client used
	media  string // response Content-Type
	params map[string]string
	actor  string // the API key's public key
	roles  []controlplane.RoleAssignment
	// raw is the body once read (a handler may read it twice).
	raw []byte
}

func (c *call) param(name string) string { return c.params[name] }

// reply writes a success. 204 has no body.
func (c *call) reply(status int, body any) {
	if status == http.StatusNoContent || body == nil {
		c.w.WriteHeader(status)
		return
	}
	if st, ok := body.(streamBody); ok {
		c.w.Header().Set("Content-Type", st.contentType)
		for k, v := range st.header {
			c.w.Header().Set(k, v)
		}
		c.w.WriteHeader(status)
		if err := st.write(c.w); err != nil {
			// The status is sent: the client sees a truncated body, which
			// a tar reader reports.
			c.h.log.Warn("admin API: streaming a response", "path", loggedPath(c.r.URL.Path), "err", err)
		}
		return
	}
	if raw, ok := body.(rawBody); ok {
		c.w.Header().Set("Content-Type", raw.contentType)
		c.w.WriteHeader(status)
		_, _ = c.w.Write(raw.data)
		return
	}
	b, err := json.Marshal(body)
	if err != nil {
		c.h.log.Error("admin API: encoding a response", "path", loggedPath(c.r.URL.Path), "err", err)
		c.fail(err)
		return
	}
	c.w.Header().Set("Content-Type", c.media)
	c.w.WriteHeader(status)
	_, _ = c.w.Write(b)
}

// streamBody is a response written as it is produced (a snapshot
// download).
type streamBody struct {
	contentType string
	header      map[string]string
	write       func(io.Writer) error
}

// rawBody is a response that is not JSON (the OpenAPI document).
type rawBody struct {
	contentType string
	data        []byte
}

// fail writes err in Atlas's envelope. Errors that are not APIErrors are
// logged and answered as a 500 that reveals nothing.
func (c *call) fail(err error) {
	ae := c.h.redact(controlplane.AsAPIError(err))
	if ae.Status >= 500 {
		c.h.log.Error("admin API request failed", "method", c.r.Method, "path", loggedPath(c.r.URL.Path), "err", err)
	}
	b, _ := json.Marshal(envelope(ae))
	c.w.Header().Set("Content-Type", c.media)
	c.w.WriteHeader(ae.Status)
	_, _ = c.w.Write(b)
}

// responseMedia is the Content-Type of answers: the vnd.atlas version the
// client asked for on v2, application/json otherwise.
func responseMedia(r *http.Request) string {
	if !strings.HasPrefix(r.URL.Path, prefixV2+"/") {
		return mediaJSON
	}
	wantsJSON := false
	for _, part := range strings.Split(r.Header.Get("Accept"), ",") {
		mt, _, err := mime.ParseMediaType(strings.TrimSpace(part))
		if err != nil {
			continue
		}
		if isAtlasMedia(mt) {
			return mt
		}
		wantsJSON = wantsJSON || mt == mediaJSON
	}
	if wantsJSON {
		return mediaJSON
	}
	return mediaAtlasDefault
}

// isAtlasMedia matches application/vnd.atlas.YYYY-MM-DD+json.
func isAtlasMedia(mt string) bool {
	date, ok := strings.CutPrefix(mt, "application/vnd.atlas.")
	if !ok {
		return false
	}
	date, ok = strings.CutSuffix(date, "+json")
	if !ok || len(date) != len("2023-01-01") || date[4] != '-' || date[7] != '-' {
		return false
	}
	for i, ch := range date {
		if i != 4 && i != 7 && (ch < '0' || ch > '9') {
			return false
		}
	}
	return true
}

// checkContentType refuses request bodies that are not JSON. A missing
// Content-Type is accepted (curl -d without -H).
func checkContentType(r *http.Request) error {
	ct := r.Header.Get("Content-Type")
	if ct == "" {
		return nil
	}
	mt, _, err := mime.ParseMediaType(ct)
	if err == nil && (mt == mediaJSON || isAtlasMedia(mt)) {
		return nil
	}
	return newErr(http.StatusUnsupportedMediaType, "UNSUPPORTED_MEDIA_TYPE",
		fmt.Sprintf("Content type %s is not supported; send application/json or application/vnd.atlas.<date>+json.", truncate(ct)))
}

// body reads the request body: at most maxBody bytes of one JSON object.
// It may be called again: the body is kept.
func (c *call) body() ([]byte, error) {
	if c.raw != nil {
		return c.raw, nil
	}
	b, err := io.ReadAll(c.r.Body)
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return nil, errInvalidJSON(fmt.Sprintf("The request body exceeds the limit of %d bytes.", maxBody))
		}
		return nil, errInvalidJSON("The request body could not be read.")
	}
	trimmed := bytes.TrimSpace(b)
	if !json.Valid(trimmed) {
		return nil, errInvalidJSON("Received JSON is malformed.")
	}
	if len(trimmed) == 0 || trimmed[0] != '{' {
		return nil, errInvalidJSON("Received JSON does not represent a JSON object.")
	}
	c.raw = trimmed
	return trimmed, nil
}

// decode reads the body into v. strict refuses attributes v does not
// have; lenient decoding is for Atlas resources whose full schema cmkdb
// accepts and ignores (clusters, alert configurations). Either way a
// value of the wrong type is refused, naming the attribute and never
// echoing the value.
func (c *call) decode(v any, strict bool) error {
	b, err := c.body()
	if err != nil {
		return err
	}
	return decodeJSON(b, v, strict)
}

func decodeJSON(b []byte, v any, strict bool) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	if strict {
		dec.DisallowUnknownFields()
	}
	err := dec.Decode(v)
	if err == nil {
		return nil
	}
	var typeErr *json.UnmarshalTypeError
	switch {
	case errors.As(err, &typeErr):
		return errInvalidAttr(typeErr.Field)
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		name, _ := strconv.Unquote(strings.TrimPrefix(err.Error(), "json: unknown field "))
		return errInvalidAttr(name)
	}
	// Other decoding failures (a malformed timestamp, for one) name no
	// attribute reliably.
	return errInvalidJSON("Received JSON is malformed or holds a value of the wrong type.")
}

// link is Atlas's Link: a URL and its relation to the resource.
type link struct {
	Href string `json:"href"`
	Rel  string `json:"rel"`
}

// listPage is Atlas's paginated list envelope.
type listPage struct {
	Links      []link `json:"links"`
	Results    any    `json:"results"`
	TotalCount *int   `json:"totalCount,omitempty"`
}

func (c *call) href(path string, q url.Values) string {
	scheme := "http"
	if c.r.TLS != nil {
		scheme = "https"
	}
	u := url.URL{Scheme: scheme, Host: c.r.Host, Path: c.prefix + path}
	if len(q) > 0 {
		u.RawQuery = q.Encode()
	}
	return u.String()
}

// selfPath is the request path relative to the version prefix.
func (c *call) selfPath() string { return strings.TrimPrefix(c.r.URL.Path, c.prefix) }

// paginate slices items by pageNum and itemsPerPage and wraps them in
// Atlas's list envelope, with self and (when there is more) next links.
func paginate[T any](c *call, items []T) (listPage, error) {
	q := c.r.URL.Query()
	pageNum, err := intParam(q, "pageNum", 1, 1, 1<<30)
	if err != nil {
		return listPage{}, err
	}
	perPage, err := intParam(q, "itemsPerPage", defaultItemsPerPage, 1, maxItemsPerPage)
	if err != nil {
		return listPage{}, err
	}
	includeCount := true
	if v := q.Get("includeCount"); v != "" {
		if includeCount, err = strconv.ParseBool(v); err != nil {
			return listPage{}, errInvalidQuery("includeCount")
		}
	}
	total := len(items)
	start := min((pageNum-1)*perPage, total)
	end := min(start+perPage, total)
	page := items[start:end]
	if page == nil {
		page = []T{}
	}
	out := listPage{Links: []link{{Href: c.href(c.selfPath(), q), Rel: "self"}}, Results: page}
	if end < total {
		nq := url.Values{}
		for k, v := range q {
			nq[k] = v
		}
		nq.Set("pageNum", strconv.Itoa(pageNum+1))
		nq.Set("itemsPerPage", strconv.Itoa(perPage))
		out.Links = append(out.Links, link{Href: c.href(c.selfPath(), nq), Rel: "next"})
	}
	if pageNum > 1 {
		pq := url.Values{}
		for k, v := range q {
			pq[k] = v
		}
		pq.Set("pageNum", strconv.Itoa(pageNum-1))
		out.Links = append(out.Links, link{Href: c.href(c.selfPath(), pq), Rel: "previous"})
	}
	if includeCount {
		out.TotalCount = &total
	}
	return out, nil
}

func intParam(q url.Values, name string, def, lo, hi int) (int, error) {
	v := q.Get(name)
	if v == "" {
		return def, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < lo || n > hi {
		return 0, errInvalidQuery(name)
	}
	return n, nil
}

// resource adds Atlas's links (self) to a single resource. It goes
// through a map so any resource type can carry them; numbers keep their
// exact text.
func (c *call) resource(v any, path string) (any, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("atlasapi: encode resource: %w", err)
	}
	m := map[string]any{}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	if err := dec.Decode(&m); err != nil {
		return nil, fmt.Errorf("atlasapi: re-decode resource: %w", err)
	}
	m["links"] = []link{{Href: c.href(path, nil), Rel: "self"}}
	return m, nil
}

// loggedPath is a request path as logs show it: a download link's token is
// a credential, so it is replaced.
func loggedPath(p string) string {
	const seg = "/backup/downloads/"
	if i := strings.Index(p, seg); i >= 0 {
		return p[:i+len(seg)] + "(token)"
	}
	return p
}
