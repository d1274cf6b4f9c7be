package ctl

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"
)

// dayName names Atlas's dayOfWeek: 1 is Sunday, 7 Saturday, 0 not set.
func dayName(d int) string {
	if d < 1 || d > 7 {
		return strconv.Itoa(d) + " (not set: rotations run when due)"
	}
	return strconv.Itoa(d) + " (" + time.Weekday(d-1).String() + ")"
}

func (a *App) printWindow(raw json.RawMessage) error {
	if a.json {
		return a.printResource(raw)
	}
	var mw MaintenanceWindow
	if err := json.Unmarshal(raw, &mw); err != nil {
		return fmt.Errorf("decoding the maintenance window: %w", err)
	}
	return a.fields([][2]string{
		{"day of week", dayName(mw.DayOfWeek)},
		{"hour of day", strconv.Itoa(mw.HourOfDay)},
		{"start asap", yesNo(mw.StartASAP)},
		{"deferred until", when(mw.DeferredUntil)},
	})
}

// MaintenanceShow prints the maintenance window, inside which scheduled
// master key rotations run.
func (a *App) MaintenanceShow(ctx context.Context) error {
	path, err := a.groupPath(ctx, "/maintenanceWindow")
	if err != nil {
		return err
	}
	var raw json.RawMessage
	if err := a.c.Do(ctx, http.MethodGet, path, nil, nil, &raw); err != nil {
		return err
	}
	return a.printWindow(raw)
}

// MaintenanceSet sets the window's day (1 Sunday … 7 Saturday) and hour
// (0–23); a nil argument is unchanged.
func (a *App) MaintenanceSet(ctx context.Context, day, hour *int) error {
	body := map[string]any{}
	if day != nil {
		body["dayOfWeek"] = *day
	}
	if hour != nil {
		body["hourOfDay"] = *hour
	}
	if len(body) == 0 {
		return errors.New("nothing to change: give --day and/or --hour")
	}
	path, err := a.groupPath(ctx, "/maintenanceWindow")
	if err != nil {
		return err
	}
	var raw json.RawMessage
	if err := a.c.Do(ctx, http.MethodPatch, path, nil, body, &raw); err != nil {
		return err
	}
	return a.printWindow(raw)
}

// MaintenanceDefer postpones due rotations (by a week) and shows the window.
func (a *App) MaintenanceDefer(ctx context.Context) error {
	path, err := a.groupPath(ctx, "/maintenanceWindow")
	if err != nil {
		return err
	}
	if err := a.c.Do(ctx, http.MethodPost, path+"/defer", nil, nil, nil); err != nil {
		return err
	}
	return a.MaintenanceShow(ctx)
}
