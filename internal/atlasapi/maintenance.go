package atlasapi

import (
	"encoding/json"
	"net/http"
)

// maintenancePatch is Atlas's GroupMaintenanceWindow as a PATCH body:
// omitted fields keep their value. Atlas's scheduling options cmkdb does
// not implement are accepted and ignored so Terraform plans apply.
type maintenancePatch struct {
	DayOfWeek            *int            `json:"dayOfWeek"`
	HourOfDay            *int            `json:"hourOfDay"`
	StartASAP            *bool           `json:"startASAP"`
	AutoDeferOnceEnabled *bool           `json:"autoDeferOnceEnabled"`
	NumberOfDeferrals    *int            `json:"numberOfDeferrals"`
	ProtectedHours       json.RawMessage `json:"protectedHours"`
	TimeZoneID           *string         `json:"timeZoneId"`
	Links                json.RawMessage `json:"links"`
}

func (h *handler) getMaintenanceWindow(c *call) (int, any, error) {
	mw, err := h.svc.MaintenanceWindow(c.param("groupId"))
	if err != nil {
		return 0, nil, err
	}
	body, err := c.resource(mw, c.selfPath())
	return http.StatusOK, body, err
}

func (h *handler) patchMaintenanceWindow(c *call) (int, any, error) {
	var in maintenancePatch
	if err := c.decode(&in, true); err != nil {
		return 0, nil, err
	}
	gid := c.param("groupId")
	mw, err := h.svc.MaintenanceWindow(gid)
	if err != nil {
		return 0, nil, err
	}
	if in.DayOfWeek != nil {
		mw.DayOfWeek = *in.DayOfWeek
	}
	if in.HourOfDay != nil {
		mw.HourOfDay = *in.HourOfDay
	}
	if in.StartASAP != nil {
		mw.StartASAP = *in.StartASAP
	}
	if mw, err = h.svc.SetMaintenanceWindow(gid, mw); err != nil {
		return 0, nil, err
	}
	body, err := c.resource(mw, c.selfPath())
	return http.StatusOK, body, err
}

// deferMaintenance answers 204, as Atlas's deferMaintenanceWindow does.
func (h *handler) deferMaintenance(c *call) (int, any, error) {
	if err := h.svc.DeferMaintenance(c.param("groupId")); err != nil {
		return 0, nil, err
	}
	return http.StatusNoContent, nil, nil
}
