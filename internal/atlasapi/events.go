package atlasapi

import (
	"fmt"
	"net/http"
	"slices"
	"time"

	"github.com/cmkdb/cmkdb/internal/controlplane"
)

// listEvents lists a project's events, newest first. Like Atlas it takes
// eventType (repeatable), minDate and maxDate (ISO 8601).
func (h *handler) listEvents(c *call) (int, any, error) {
	q := c.r.URL.Query()
	minDate, err := dateParam(q.Get("minDate"), "minDate")
	if err != nil {
		return 0, nil, err
	}
	maxDate, err := dateParam(q.Get("maxDate"), "maxDate")
	if err != nil {
		return 0, nil, err
	}
	types := q["eventType"]
	all, err := h.svc.Events(c.param("groupId"), "")
	if err != nil {
		return 0, nil, err
	}
	out := make([]controlplane.Event, 0, len(all))
	for _, e := range all {
		if len(types) > 0 && !slices.Contains(types, e.EventTypeName) {
			continue
		}
		if (!minDate.IsZero() && e.Created.Before(minDate)) || (!maxDate.IsZero() && e.Created.After(maxDate)) {
			continue
		}
		out = append(out, e)
	}
	page, err := paginate(c, out)
	return http.StatusOK, page, err
}

func (h *handler) getEvent(c *call) (int, any, error) {
	all, err := h.svc.Events(c.param("groupId"), "")
	if err != nil {
		return 0, nil, err
	}
	id := c.param("eventId")
	for _, e := range all {
		if e.ID == id {
			body, err := c.resource(e, c.selfPath())
			return http.StatusOK, body, err
		}
	}
	return 0, nil, newErr(http.StatusNotFound, "EVENT_NOT_FOUND", fmt.Sprintf("No event with ID %s exists.", truncate(id)), truncate(id))
}

// dateParam parses an ISO 8601 date or timestamp; "" is no bound.
func dateParam(v, name string) (time.Time, error) {
	if v == "" {
		return time.Time{}, nil
	}
	for _, layout := range []string{time.RFC3339Nano, "2006-01-02"} {
		if t, err := time.Parse(layout, v); err == nil {
			return t, nil
		}
	}
	return time.Time{}, errInvalidQuery(name)
}
