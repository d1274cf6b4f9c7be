package controlplane

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"net/http"
	"time"
)

// Downloads (deliveryType "download"): a restore job whose deliveryUrl
// serves the snapshot once, as a tar archive of its files exactly as the
// store holds them — the encrypted database files, the keystore of that
// moment and the manifest. No credential is in it: it opens only through
// the CMK that wrapped it (`cmkdb snapshot verify --kms-config`). The URL
// carries a random token, valid for DownloadValidity and one download;
// the job keeps only the token's SHA-256.

// DownloadValidity is how long a download URL works.
const DownloadValidity = time.Hour

// downloadPath is the URL path of a download, under an API version.
func downloadPath(token string) string { return "/backup/downloads/" + token }

// createDownloadLocked fills a download job: its token, URL and expiry.
func createDownloadLocked(job *RestoreJob, baseURL string, now time.Time) error {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		return err
	}
	token := hex.EncodeToString(b[:])
	sum := sha256.Sum256([]byte(token))
	job.TokenSHA256 = hex.EncodeToString(sum[:])
	exp := now.Add(DownloadValidity)
	job.ExpiresAt = &exp
	job.DeliveryURL = []string{baseURL + downloadPath(token)}
	job.State = "READY"
	return nil
}

// ErrDownloadGone is returned for an unknown, used or expired token.
var ErrDownloadGone = apiErr(http.StatusNotFound, "RESOURCE_NOT_FOUND", "This download link is unknown, expired or already used.")

// TakeDownload consumes a download token and returns the snapshot's
// directory and a name for the archive. A token works once: the job is
// marked used (expired, its URL removed) before a byte is sent.
func (s *Service) TakeDownload(ctx context.Context, token string) (dir, name string, err error) {
	sum := sha256.Sum256([]byte(token))
	want := hex.EncodeToString(sum[:])
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.snapshots == nil {
		return "", "", ErrDownloadGone
	}
	var key string
	var job RestoreJob
	err = s.st.scan("restore/", func(k string, open func(any) error) error {
		var j RestoreJob
		if err := open(&j); err != nil {
			return err
		}
		if j.DeliveryType == "download" && len(j.TokenSHA256) == len(want) && subtle.ConstantTimeCompare([]byte(j.TokenSHA256), []byte(want)) == 1 {
			key, job = k, j
		}
		return nil
	})
	if err != nil {
		return "", "", err
	}
	now := s.now().UTC()
	if key == "" || job.Expired || job.ExpiresAt == nil || now.After(*job.ExpiresAt) {
		return "", "", ErrDownloadGone
	}
	m, err := s.snapshots.Get(job.TargetGroupID, job.SourceClusterName, job.SnapshotID)
	if err != nil {
		return "", "", ErrDownloadGone
	}
	job.Expired, job.DeliveryURL, job.TokenSHA256, job.State, job.FinishedAt = true, nil, "", "COMPLETED", &now
	if err := s.st.put(map[string]any{key: job}); err != nil {
		return "", "", err
	}
	return s.snapshots.Path(job.TargetGroupID, job.SourceClusterName, m.ID), m.ID + ".tar", nil
}
