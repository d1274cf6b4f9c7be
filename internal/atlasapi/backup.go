package atlasapi

import (
	"io"
	"net/http"

	"github.com/cmkdb/cmkdb/internal/controlplane"
	"github.com/cmkdb/cmkdb/internal/snapshot"
)

// Cloud Backup: on-demand snapshots and automated restore jobs of a
// cluster (controlplane/backup.go).

func (h *handler) takeSnapshot(c *call) (int, any, error) {
	var in controlplane.SnapshotRequest
	if err := c.decode(&in, false); err != nil {
		return 0, nil, err
	}
	gid, name := c.param("groupId"), c.param("clusterName")
	sp, err := h.svc.TakeSnapshot(c.r.Context(), c.actor, gid, name, in)
	if err != nil {
		return 0, nil, err
	}
	body, err := c.resource(sp, "/groups/"+gid+"/clusters/"+name+"/backup/snapshots/"+sp.ID)
	return http.StatusOK, body, err
}

func (h *handler) listSnapshots(c *call) (int, any, error) {
	sps, err := h.svc.Snapshots(c.param("groupId"), c.param("clusterName"))
	if err != nil {
		return 0, nil, err
	}
	page, err := paginate(c, sps)
	return http.StatusOK, page, err
}

func (h *handler) getSnapshot(c *call) (int, any, error) {
	sp, err := h.svc.GetSnapshot(c.param("groupId"), c.param("clusterName"), c.param("snapshotId"))
	if err != nil {
		return 0, nil, err
	}
	body, err := c.resource(sp, c.selfPath())
	return http.StatusOK, body, err
}

func (h *handler) deleteSnapshot(c *call) (int, any, error) {
	if err := h.svc.DeleteSnapshot(c.r.Context(), c.actor, c.param("groupId"), c.param("clusterName"), c.param("snapshotId")); err != nil {
		return 0, nil, err
	}
	return http.StatusNoContent, nil, nil
}

func (h *handler) createRestoreJob(c *call) (int, any, error) {
	var in controlplane.RestoreRequest
	if err := c.decode(&in, false); err != nil {
		return 0, nil, err
	}
	gid, name := c.param("groupId"), c.param("clusterName")
	in.BaseURL = c.href("", nil)
	job, err := h.svc.CreateRestoreJob(c.r.Context(), c.actor, gid, name, in)
	if err != nil {
		return 0, nil, err
	}
	body, err := c.resource(job, "/groups/"+gid+"/clusters/"+name+"/backup/restoreJobs/"+job.ID)
	return http.StatusOK, body, err
}

func (h *handler) listRestoreJobs(c *call) (int, any, error) {
	jobs, err := h.svc.RestoreJobs(c.param("groupId"), c.param("clusterName"))
	if err != nil {
		return 0, nil, err
	}
	page, err := paginate(c, jobs)
	return http.StatusOK, page, err
}

func (h *handler) getRestoreJob(c *call) (int, any, error) {
	job, err := h.svc.GetRestoreJob(c.param("groupId"), c.param("clusterName"), c.param("jobId"))
	if err != nil {
		return 0, nil, err
	}
	body, err := c.resource(job, c.selfPath())
	return http.StatusOK, body, err
}

func (h *handler) getBackupSchedule(c *call) (int, any, error) {
	sc, err := h.svc.BackupSchedule(c.param("groupId"), c.param("clusterName"))
	if err != nil {
		return 0, nil, err
	}
	body, err := c.resource(sc, c.selfPath())
	return http.StatusOK, body, err
}

func (h *handler) updateBackupSchedule(c *call) (int, any, error) {
	var in controlplane.BackupSchedulePatch
	if err := c.decode(&in, false); err != nil {
		return 0, nil, err
	}
	sc, err := h.svc.UpdateBackupSchedule(c.r.Context(), c.actor, c.param("groupId"), c.param("clusterName"), in)
	if err != nil {
		return 0, nil, err
	}
	body, err := c.resource(sc, c.selfPath())
	return http.StatusOK, body, err
}

func (h *handler) deleteBackupSchedule(c *call) (int, any, error) {
	sc, err := h.svc.DeleteBackupSchedule(c.r.Context(), c.actor, c.param("groupId"), c.param("clusterName"))
	if err != nil {
		return 0, nil, err
	}
	body, err := c.resource(sc, c.selfPath())
	return http.StatusOK, body, err
}

// download serves a download job's snapshot, once, as a tar archive. The
// token in the path is the credential (as a pre-signed URL is), so the
// route needs no API key; an unknown, used or expired token is 404.
func (h *handler) download(c *call) (int, any, error) {
	dir, name, err := h.svc.TakeDownload(c.r.Context(), c.param("token"))
	if err != nil {
		return 0, nil, err
	}
	return http.StatusOK, streamBody{contentType: "application/x-tar",
		header: map[string]string{"Content-Disposition": `attachment; filename="` + name + `"`, "Cache-Control": "no-store"},
		write:  func(w io.Writer) error { return snapshot.WriteArchive(w, dir) }}, nil
}
