package controlplane

import (
	"errors"
	"math"
	"testing"

	"github.com/cmkdb/cmkdb/internal/logarchive"
)

// A point-in-time request names one timestamp: a second (every change of
// it and before) or an exact oplog timestamp; anything else is 400.
func TestPITTarget(t *testing.T) {
	for _, tc := range []struct {
		name string
		req  RestoreRequest
		want logarchive.Timestamp
		bad  bool
	}{
		{"seconds", RestoreRequest{PointInTimeUTCSeconds: 1700000000}, logarchive.Timestamp{T: 1700000000, I: math.MaxUint32}, false},
		{"oplog timestamp", RestoreRequest{OplogTs: 1700000000, OplogInc: 7}, logarchive.Timestamp{T: 1700000000, I: 7}, false},
		{"both", RestoreRequest{PointInTimeUTCSeconds: 1, OplogTs: 1, OplogInc: 1}, logarchive.Timestamp{}, true},
		{"neither", RestoreRequest{}, logarchive.Timestamp{}, true},
		{"negative seconds", RestoreRequest{PointInTimeUTCSeconds: -5}, logarchive.Timestamp{}, true},
		{"seconds past 2106", RestoreRequest{PointInTimeUTCSeconds: math.MaxUint32 + 1}, logarchive.Timestamp{}, true},
		{"increment 0", RestoreRequest{OplogTs: 5}, logarchive.Timestamp{}, true},
		{"increment too large", RestoreRequest{OplogTs: 5, OplogInc: math.MaxUint32 + 1}, logarchive.Timestamp{}, true},
	} {
		got, err := pitTarget(tc.req)
		var ae *APIError
		if tc.bad {
			if !errors.As(err, &ae) || ae.Status != 400 {
				t.Errorf("%s: %v %v, want a 400", tc.name, got, err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("%s: %v %v, want %v", tc.name, got, err, tc.want)
		}
	}
}

// Continuous backup needs backups on and a replica set.
func TestCheckPIT(t *testing.T) {
	for _, tc := range []struct {
		pit, backup bool
		members     int
		ok          bool
	}{
		{false, false, 1, true}, {true, true, 3, true}, {true, false, 3, false}, {true, true, 1, false},
	} {
		if err := checkPIT(tc.pit, tc.backup, tc.members); (err == nil) != tc.ok {
			t.Errorf("pit %v backup %v members %d: %v", tc.pit, tc.backup, tc.members, err)
		}
	}
}
