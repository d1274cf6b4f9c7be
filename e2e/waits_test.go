package e2e

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"

	"github.com/cmkdb/cmkdb/e2e/e2etest"
)

// Waiting for "several check intervals" is waiting for several checks to
// be observed, not for a fixed time: on a loaded machine a fixed sleep may
// see no check at all, and the test then asserts on nothing.

// nodeKMSChecks returns how many key checks a node has made
// (serverStatus.encryptionAtRest.kmsCalls.check).
func nodeKMSChecks(t testing.TB, c *mongo.Client) (int64, error) {
	var st struct {
		EAR struct {
			KMSCalls struct {
				Check int64 `bson:"check"`
			} `bson:"kmsCalls"`
		} `bson:"encryptionAtRest"`
	}
	err := c.Database("admin").RunCommand(opCtx(t), bson.D{{Key: "serverStatus", Value: 1}}).Decode(&st)
	return st.EAR.KMSCalls.Check, err
}

// waitNodeKMSChecks waits until the node behind c has made n more key
// checks than when called.
func waitNodeKMSChecks(t *testing.T, c *mongo.Client, n int64) {
	t.Helper()
	start, err := nodeKMSChecks(t, c)
	if err != nil {
		t.Fatalf("serverStatus: %v", err)
	}
	e2etest.Eventually(t, stateTimeout, fmt.Sprintf("%d more key checks by the node", n), func() error {
		got, err := nodeKMSChecks(t, c)
		if err != nil {
			return err
		}
		if got < start+n {
			return fmt.Errorf("%d key checks since waiting began, want %d", got-start, n)
		}
		return nil
	})
}

// projectKeyStatus returns the project's encryptionAtRest.keyStatus.
func projectKeyStatus(api *e2etest.API, gid string) (reachable bool, checkedAt time.Time, err error) {
	var ear struct {
		KeyStatus struct {
			Reachable *bool     `json:"reachable"`
			CheckedAt time.Time `json:"checkedAt"`
		} `json:"keyStatus"`
	}
	if err := api.CallErr("GET", "/groups/"+gid+"/encryptionAtRest", nil, &ear); err != nil {
		return false, time.Time{}, err
	}
	if ear.KeyStatus.Reachable == nil {
		return false, time.Time{}, errors.New("encryptionAtRest has no keyStatus.reachable")
	}
	return *ear.KeyStatus.Reachable, ear.KeyStatus.CheckedAt, nil
}

// waitProjectUnreachableChecks waits until the control plane has found the
// project's KMS unreachable, then for n more of its key checks.
func waitProjectUnreachableChecks(t *testing.T, api *e2etest.API, gid string, n int) {
	t.Helper()
	var last time.Time
	seen := 0
	e2etest.Eventually(t, stateTimeout, fmt.Sprintf("the KMS found unreachable, then %d more key checks", n), func() error {
		reachable, at, err := projectKeyStatus(api, gid)
		if err != nil {
			return err
		}
		if reachable {
			seen, last = 0, time.Time{}
			return errors.New("keyStatus.reachable is still true")
		}
		if at.After(last) {
			if !last.IsZero() {
				seen++
			}
			last = at
		}
		if seen < n {
			return fmt.Errorf("%d key checks since the KMS was found unreachable, want %d", seen, n)
		}
		return nil
	})
}
