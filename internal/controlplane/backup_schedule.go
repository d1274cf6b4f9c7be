package controlplane

import (
	"context"
	"net/http"
	"strconv"
	"time"
)

// Backup schedules (Atlas's cloud backup schedule): policy items say how
// often snapshots are taken (hourly every 1, 2, 4, 6, 8 or 12 hours; daily;
// weekly on a day; monthly on a day or the last day) and how long each is
// kept. Snapshots fall on a grid anchored at the reference hour and minute
// (UTC) with the step of the most frequent item; a snapshot that several
// items match is kept as long as the longest of them. Scheduled snapshots
// run only for clusters with backupEnabled (or providerBackupEnabled) true;
// the default schedule is Atlas's: every 6 hours kept 2 days, daily kept 7
// days, weekly (Saturday) kept 4 weeks, monthly (last day) kept 12 months.

// BackupSchedule is a cluster's backup policy.
type BackupSchedule struct {
	ClusterID             string         `json:"clusterId"`
	ClusterName           string         `json:"clusterName"`
	ReferenceHourOfDay    int            `json:"referenceHourOfDay"`
	ReferenceMinuteOfHour int            `json:"referenceMinuteOfHour"`
	RestoreWindowDays     int            `json:"restoreWindowDays"`
	NextSnapshot          *time.Time     `json:"nextSnapshot,omitempty"`
	Policies              []BackupPolicy `json:"policies"`
	AutoExportEnabled     bool           `json:"autoExportEnabled"`
	CopySettings          []any          `json:"copySettings"`
}

// BackupPolicy groups policy items (a cluster has one).
type BackupPolicy struct {
	ID          string             `json:"id"`
	PolicyItems []BackupPolicyItem `json:"policyItems"`
}

// BackupPolicyItem is one frequency and its retention.
type BackupPolicyItem struct {
	ID                string `json:"id"`
	FrequencyInterval int    `json:"frequencyInterval"`
	FrequencyType     string `json:"frequencyType"`
	RetentionUnit     string `json:"retentionUnit"`
	RetentionValue    int    `json:"retentionValue"`
}

// BackupSchedulePatch is the body of a schedule update.
type BackupSchedulePatch struct {
	ReferenceHourOfDay    *int           `json:"referenceHourOfDay"`
	ReferenceMinuteOfHour *int           `json:"referenceMinuteOfHour"`
	RestoreWindowDays     *int           `json:"restoreWindowDays"`
	Policies              []BackupPolicy `json:"policies"`
	UpdateSnapshots       *bool          `json:"updateSnapshots"`
	AutoExportEnabled     *bool          `json:"autoExportEnabled"`
	Export                any            `json:"export"`
	CopySettings          []any          `json:"copySettings"`
	DeleteCopiedBackups   []any          `json:"deleteCopiedBackups"`
}

func scheduleKey(gid, cluster string) string { return "schedule/" + gid + "/" + cluster }

// defaultSchedule is Atlas's default policy, anchored at the cluster's
// creation minute.
func defaultSchedule(c *Cluster) BackupSchedule {
	at := c.CreateDate.UTC()
	id := func(n int) string { return c.ID[:min(len(c.ID), 16)] + "0000000" + strconv.Itoa(n) }
	return BackupSchedule{ClusterID: c.ID, ClusterName: c.Name, ReferenceHourOfDay: at.Hour(), ReferenceMinuteOfHour: at.Minute(),
		RestoreWindowDays: 2, CopySettings: []any{},
		Policies: []BackupPolicy{{ID: id(0), PolicyItems: []BackupPolicyItem{
			{ID: id(1), FrequencyType: "hourly", FrequencyInterval: 6, RetentionUnit: "days", RetentionValue: 2},
			{ID: id(2), FrequencyType: "daily", FrequencyInterval: 1, RetentionUnit: "days", RetentionValue: 7},
			{ID: id(3), FrequencyType: "weekly", FrequencyInterval: 6, RetentionUnit: "weeks", RetentionValue: 4},
			{ID: id(4), FrequencyType: "monthly", FrequencyInterval: 40, RetentionUnit: "months", RetentionValue: 12},
		}}}}
}

// scheduleLocked returns the cluster's schedule (the default until one is
// set), with its next snapshot time when backups are enabled.
func (s *Service) scheduleLocked(gid string, c *Cluster) (BackupSchedule, error) {
	var sc BackupSchedule
	found := false
	if err := s.st.get(scheduleKey(gid, c.Name), &sc, &found); err != nil {
		return BackupSchedule{}, err
	}
	if !found {
		sc = defaultSchedule(c)
	}
	sc.ClusterID, sc.ClusterName = c.ID, c.Name
	if sc.CopySettings == nil {
		sc.CopySettings = []any{}
	}
	sc.NextSnapshot = nil
	if c.BackupEnabled {
		if t, _, ok := nextSlot(sc, s.now()); ok {
			sc.NextSnapshot = &t
		}
	}
	return sc, nil
}

// BackupSchedule returns a cluster's backup schedule.
func (s *Service) BackupSchedule(gid, cluster string) (BackupSchedule, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	gs, err := s.group(gid)
	if err != nil {
		return BackupSchedule{}, err
	}
	c, ok := gs.clusters[cluster]
	if !ok {
		return BackupSchedule{}, notFound("cluster", cluster)
	}
	return s.scheduleLocked(gid, c)
}

// UpdateBackupSchedule changes a cluster's schedule. What cmkdb does not do
// (exports, copies to other regions, re-timing existing snapshots) is
// refused, not ignored.
func (s *Service) UpdateBackupSchedule(ctx context.Context, actor, gid, cluster string, p BackupSchedulePatch) (BackupSchedule, error) {
	bad := func(attr, why string) (BackupSchedule, error) {
		return BackupSchedule{}, apiErr(http.StatusBadRequest, "INVALID_ATTRIBUTE", "Invalid attribute %s specified: %s", attr, why)
	}
	switch {
	case p.UpdateSnapshots != nil && *p.UpdateSnapshots:
		return bad("updateSnapshots", "changing the retention of existing snapshots is not available.")
	case p.AutoExportEnabled != nil && *p.AutoExportEnabled, p.Export != nil:
		return bad("autoExportEnabled", "exporting snapshots to a bucket is not available.")
	case len(p.CopySettings) > 0 || len(p.DeleteCopiedBackups) > 0:
		return bad("copySettings", "copying snapshots to other regions is not available.")
	case p.ReferenceHourOfDay != nil && (*p.ReferenceHourOfDay < 0 || *p.ReferenceHourOfDay > 23):
		return bad("referenceHourOfDay", "it must be 0 to 23.")
	case p.ReferenceMinuteOfHour != nil && (*p.ReferenceMinuteOfHour < 0 || *p.ReferenceMinuteOfHour > 59):
		return bad("referenceMinuteOfHour", "it must be 0 to 59.")
	case p.RestoreWindowDays != nil && *p.RestoreWindowDays < 1:
		return bad("restoreWindowDays", "it must be at least 1.")
	case len(p.Policies) > 1:
		return bad("policies", "a cluster has one policy.")
	}
	if len(p.Policies) == 1 {
		seen := map[string]bool{}
		for _, it := range p.Policies[0].PolicyItems {
			if seen[it.FrequencyType] {
				return bad("policyItems", "one item per frequencyType.")
			}
			seen[it.FrequencyType] = true
			if err := checkPolicyItem(it); err != "" {
				return bad("policyItems", err)
			}
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	gs, err := s.group(gid)
	if err != nil {
		return BackupSchedule{}, err
	}
	c, ok := gs.clusters[cluster]
	if !ok {
		return BackupSchedule{}, notFound("cluster", cluster)
	}
	sc, err := s.scheduleLocked(gid, c)
	if err != nil {
		return BackupSchedule{}, err
	}
	if p.ReferenceHourOfDay != nil {
		sc.ReferenceHourOfDay = *p.ReferenceHourOfDay
	}
	if p.ReferenceMinuteOfHour != nil {
		sc.ReferenceMinuteOfHour = *p.ReferenceMinuteOfHour
	}
	if p.RestoreWindowDays != nil {
		sc.RestoreWindowDays = *p.RestoreWindowDays
	}
	if len(p.Policies) == 1 {
		now := s.now()
		pol := BackupPolicy{ID: sc.Policies[0].ID}
		for _, it := range p.Policies[0].PolicyItems {
			if it.ID == "" {
				it.ID = newID(now)
				now = now.Add(time.Millisecond)
			}
			pol.PolicyItems = append(pol.PolicyItems, it)
		}
		sc.Policies = []BackupPolicy{pol}
	}
	sc.NextSnapshot = nil
	if err := s.st.put(map[string]any{scheduleKey(gid, cluster): sc}); err != nil {
		return BackupSchedule{}, err
	}
	return s.scheduleLocked(gid, c)
}

// DeleteBackupSchedule removes every policy item: no scheduled snapshots.
func (s *Service) DeleteBackupSchedule(ctx context.Context, actor, gid, cluster string) (BackupSchedule, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	gs, err := s.group(gid)
	if err != nil {
		return BackupSchedule{}, err
	}
	c, ok := gs.clusters[cluster]
	if !ok {
		return BackupSchedule{}, notFound("cluster", cluster)
	}
	sc, err := s.scheduleLocked(gid, c)
	if err != nil {
		return BackupSchedule{}, err
	}
	sc.Policies = []BackupPolicy{{ID: sc.Policies[0].ID, PolicyItems: []BackupPolicyItem{}}}
	sc.NextSnapshot = nil
	if err := s.st.put(map[string]any{scheduleKey(gid, cluster): sc}); err != nil {
		return BackupSchedule{}, err
	}
	return s.scheduleLocked(gid, c)
}

func checkPolicyItem(it BackupPolicyItem) string {
	ok := false
	switch it.FrequencyType {
	case "hourly":
		for _, v := range []int{1, 2, 4, 6, 8, 12} {
			ok = ok || it.FrequencyInterval == v
		}
	case "daily":
		ok = it.FrequencyInterval == 1
	case "weekly":
		ok = it.FrequencyInterval >= 1 && it.FrequencyInterval <= 7
	case "monthly":
		ok = (it.FrequencyInterval >= 1 && it.FrequencyInterval <= 28) || it.FrequencyInterval == 40
	default:
		return "frequencyType must be hourly, daily, weekly or monthly."
	}
	if !ok {
		return "frequencyInterval " + strconv.Itoa(it.FrequencyInterval) + " is not valid for " + it.FrequencyType + "."
	}
	if it.RetentionUnit != "days" && it.RetentionUnit != "weeks" && it.RetentionUnit != "months" {
		return "retentionUnit must be days, weeks or months."
	}
	if it.RetentionValue < 1 {
		return "retentionValue must be at least 1."
	}
	return ""
}

// step is the grid of a schedule: the most frequent item's period.
func step(sc BackupSchedule) (time.Duration, bool) {
	if len(sc.Policies) == 0 || len(sc.Policies[0].PolicyItems) == 0 {
		return 0, false
	}
	d := 24 * time.Hour
	for _, it := range sc.Policies[0].PolicyItems {
		if it.FrequencyType == "hourly" {
			d = min(d, time.Duration(it.FrequencyInterval)*time.Hour)
		}
	}
	return d, true
}

// matches reports which items a slot at t satisfies and how long its
// snapshot is kept (the longest of them).
func matches(sc BackupSchedule, t time.Time) (kept time.Time, types []string) {
	t = t.UTC()
	onReference := t.Hour() == sc.ReferenceHourOfDay && t.Minute() == sc.ReferenceMinuteOfHour
	for _, it := range sc.Policies[0].PolicyItems {
		ok := false
		switch it.FrequencyType {
		case "hourly":
			ok = true
		case "daily":
			ok = onReference
		case "weekly":
			wd := int(t.Weekday())
			if wd == 0 {
				wd = 7
			}
			ok = onReference && wd == it.FrequencyInterval
		case "monthly":
			last := t.AddDate(0, 0, 1).Month() != t.Month()
			ok = onReference && (t.Day() == it.FrequencyInterval || (it.FrequencyInterval == 40 && last))
		}
		if !ok {
			continue
		}
		types = append(types, it.FrequencyType)
		var until time.Time
		switch it.RetentionUnit {
		case "days":
			until = t.AddDate(0, 0, it.RetentionValue)
		case "weeks":
			until = t.AddDate(0, 0, 7*it.RetentionValue)
		case "months":
			until = t.AddDate(0, it.RetentionValue, 0)
		}
		if until.After(kept) {
			kept = until
		}
	}
	return kept, types
}

// nextSlot is the first slot after now that some item matches.
func nextSlot(sc BackupSchedule, now time.Time) (time.Time, []string, bool) {
	d, ok := step(sc)
	if !ok {
		return time.Time{}, nil, false
	}
	now = now.UTC()
	anchor := time.Date(now.Year(), now.Month(), now.Day(), sc.ReferenceHourOfDay, sc.ReferenceMinuteOfHour, 0, 0, time.UTC)
	for anchor.After(now) {
		anchor = anchor.Add(-24 * time.Hour)
	}
	t := anchor.Add(now.Sub(anchor).Truncate(d) + d)
	for i := 0; i < 24*400; i++ {
		if _, types := matches(sc, t); len(types) > 0 {
			return t, types, true
		}
		t = t.Add(d)
	}
	return time.Time{}, nil, false
}

// runSchedules takes the scheduled snapshots that are due. lastRun is the
// previous call's time: a slot in (lastRun, now] is due (a slot missed
// while the control plane was stopped is not made up).
func (s *Service) runSchedules(lastRun time.Time) {
	now := s.now()
	type due struct {
		gid, cluster string
		kept         time.Time
		types        []string
	}
	var todo []due
	s.mu.Lock()
	for gid, gs := range s.groups {
		for _, c := range gs.clusters {
			if !c.BackupEnabled {
				continue
			}
			sc, err := s.scheduleLocked(gid, c)
			if err != nil {
				continue
			}
			t, types, ok := nextSlot(sc, lastRun)
			if !ok || t.After(now) {
				continue
			}
			kept, _ := matches(sc, t)
			todo = append(todo, due{gid, c.Name, kept, types})
		}
	}
	s.mu.Unlock()
	for _, d := range todo {
		if _, err := s.takeSnapshot(context.Background(), d.gid, d.cluster, "scheduled", "", d.kept, d.types); err != nil {
			s.log.Warn("scheduled snapshot", "cluster", d.cluster, "err", err)
		}
	}
}
