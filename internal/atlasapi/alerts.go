package atlasapi

import (
	"net/http"

	"github.com/cmkdb/cmkdb/internal/controlplane"
)

// Alert configuration bodies are decoded leniently: Atlas's notification
// object has a field per integration (datadogApiKey, channelName, …) that
// cmkdb records nothing of. Webhook secrets are masked in every answer by
// the service.

func (h *handler) listAlertConfigs(c *call) (int, any, error) {
	cfgs, err := h.svc.AlertConfigs(c.param("groupId"))
	if err != nil {
		return 0, nil, err
	}
	page, err := paginate(c, cfgs)
	return http.StatusOK, page, err
}

// createAlertConfig answers 201, as Atlas does.
func (h *handler) createAlertConfig(c *call) (int, any, error) {
	var in controlplane.AlertConfig
	if err := c.decode(&in, false); err != nil {
		return 0, nil, err
	}
	cfg, err := h.svc.CreateAlertConfig(c.r.Context(), c.param("groupId"), in)
	if err != nil {
		return 0, nil, err
	}
	body, err := c.resource(cfg, "/groups/"+cfg.GroupID+"/alertConfigs/"+cfg.ID)
	return http.StatusCreated, body, err
}

func (h *handler) getAlertConfig(c *call) (int, any, error) {
	cfg, err := h.svc.AlertConfig(c.param("groupId"), c.param("alertConfigId"))
	if err != nil {
		return 0, nil, err
	}
	body, err := c.resource(cfg, c.selfPath())
	return http.StatusOK, body, err
}

// replaceAlertConfig is PUT: the body replaces the configuration.
func (h *handler) replaceAlertConfig(c *call) (int, any, error) {
	var in controlplane.AlertConfig
	if err := c.decode(&in, false); err != nil {
		return 0, nil, err
	}
	cfg, err := h.svc.UpdateAlertConfig(c.r.Context(), c.param("groupId"), c.param("alertConfigId"), in, false)
	if err != nil {
		return 0, nil, err
	}
	body, err := c.resource(cfg, c.selfPath())
	return http.StatusOK, body, err
}

// toggleAlertConfig is PATCH: Atlas's AlertsToggle, {enabled} and nothing else.
func (h *handler) toggleAlertConfig(c *call) (int, any, error) {
	var in struct {
		Enabled *bool `json:"enabled"`
	}
	if err := c.decode(&in, true); err != nil {
		return 0, nil, err
	}
	if in.Enabled == nil {
		return 0, nil, errMissingAttr("enabled")
	}
	cfg, err := h.svc.UpdateAlertConfig(c.r.Context(), c.param("groupId"), c.param("alertConfigId"),
		controlplane.AlertConfig{Enabled: *in.Enabled}, true)
	if err != nil {
		return 0, nil, err
	}
	body, err := c.resource(cfg, c.selfPath())
	return http.StatusOK, body, err
}

// deleteAlertConfig answers 204, as Atlas does.
func (h *handler) deleteAlertConfig(c *call) (int, any, error) {
	if err := h.svc.DeleteAlertConfig(c.r.Context(), c.param("groupId"), c.param("alertConfigId")); err != nil {
		return 0, nil, err
	}
	return http.StatusNoContent, nil, nil
}

// listAlerts filters by Atlas's status query parameter.
func (h *handler) listAlerts(c *call) (int, any, error) {
	status := c.r.URL.Query().Get("status")
	switch status {
	case "", "OPEN", "CLOSED", "TRACKING", "CANCELLED":
	default:
		return 0, nil, errInvalidQuery("status")
	}
	alerts, err := h.svc.Alerts(c.param("groupId"), status)
	if err != nil {
		return 0, nil, err
	}
	page, err := paginate(c, alerts)
	return http.StatusOK, page, err
}

func (h *handler) getAlert(c *call) (int, any, error) {
	a, err := h.svc.GetAlert(c.param("groupId"), c.param("alertId"))
	if err != nil {
		return 0, nil, err
	}
	body, err := c.resource(a, c.selfPath())
	return http.StatusOK, body, err
}
