package e2e

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/cmkdb/cmkdb/e2e/e2etest"
	"github.com/cmkdb/cmkdb/internal/testenv"
)

// TestControlPlaneSurvivesKill9: `cmkdb up` is killed with SIGKILL while
// the admin API acknowledges configuration changes, a master-key rotation
// is in flight and clients write. After every restart each acknowledged
// alert configuration and document is there, the control plane's sealed
// store opens, and the node unwraps its master key.
func TestControlPlaneSurvivesKill9(t *testing.T) {
	dir := t.TempDir()
	var ackedConfigs []string
	var ackedDocs []int64
	next := int64(0)
	for round := range 5 {
		s := e2etest.Start(t, cmkdbBin, dir, "--key-check-interval", "1s", "--allow-private-webhooks")
		if s.Info.State != "AVAILABLE" {
			t.Fatalf("round %d: node %s after restart", round, s.Info.State)
		}
		api := s.UpAPI()
		gid := s.Info.GroupID
		// Everything acknowledged before the last kill is still there.
		have := map[string]bool{}
		for page := 1; ; page++ {
			var cfgs struct {
				Results []struct {
					ID string `json:"id"`
				} `json:"results"`
			}
			api.Call(t, "GET", fmt.Sprintf("/groups/%s/alertConfigs?itemsPerPage=500&pageNum=%d", gid, page), nil, &cfgs)
			if len(cfgs.Results) == 0 {
				break
			}
			for _, c := range cfgs.Results {
				have[c.ID] = true
			}
		}
		for _, id := range ackedConfigs {
			if !have[id] {
				t.Fatalf("round %d: acknowledged alert configuration %s lost (%d acknowledged, %d present)", round, id, len(ackedConfigs), len(have))
			}
		}
		c := connect(t, s.URI)
		coll := c.Database("crash").Collection("docs")
		if n, err := coll.CountDocuments(opCtx(t), bson.D{}); err != nil || n < int64(len(ackedDocs)) {
			t.Fatalf("round %d: %d documents, %d acknowledged (%v)", round, n, len(ackedDocs), err)
		}

		var mu sync.Mutex
		stop := make(chan struct{})
		var wg sync.WaitGroup
		wg.Add(3)
		go func() { // configuration changes
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				var cfg struct {
					ID string `json:"id"`
				}
				err := api.CallErr("POST", "/groups/"+gid+"/alertConfigs", map[string]any{
					"eventTypeName": "ENCRYPTION_AT_REST_KMS_NETWORK_ACCESS_DENIED", "enabled": true,
					"notifications": []map[string]any{{"typeName": "WEBHOOK", "webhookUrl": fmt.Sprintf("http://127.0.0.1:9/%d-%d", round, i)}},
				}, &cfg)
				if err == nil {
					mu.Lock()
					ackedConfigs = append(ackedConfigs, cfg.ID)
					mu.Unlock()
				}
				time.Sleep(5 * time.Millisecond)
			}
		}()
		go func() { // rotations
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				case <-time.After(50 * time.Millisecond):
				}
				_ = api.CallErr("POST", "/groups/"+gid+"/clusters/Cluster0/encryptionAtRest/rotateMasterKey", nil, nil)
			}
		}()
		go func() { // client writes
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				mu.Lock()
				next++
				id := next
				mu.Unlock()
				// A short deadline: once the server is killed, a write must
				// fail fast rather than wait out server selection.
				ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
				_, err := coll.InsertOne(ctx, bson.D{{Key: "_id", Value: id}})
				cancel()
				if err == nil {
					mu.Lock()
					ackedDocs = append(ackedDocs, id)
					mu.Unlock()
				}
			}
		}()
		// The kill comes at a random instant once this round has had
		// writes of both kinds acknowledged: on a loaded machine a fixed
		// instant from the start may come before any, and the round would
		// check nothing.
		mu.Lock()
		configs0, docs0 := len(ackedConfigs), len(ackedDocs)
		mu.Unlock()
		err := testenv.Poll(context.Background(), stateTimeout, func() error {
			mu.Lock()
			defer mu.Unlock()
			if len(ackedConfigs) == configs0 || len(ackedDocs) == docs0 {
				return fmt.Errorf("%d configurations and %d documents acknowledged this round", len(ackedConfigs)-configs0, len(ackedDocs)-docs0)
			}
			return nil
		})
		if err != nil {
			close(stop)
			wg.Wait()
			t.Fatalf("round %d: %v", round, err)
		}
		time.Sleep(time.Duration(300+rand.IntN(700)) * time.Millisecond)
		s.Kill(t)
		close(stop)
		wg.Wait()
		disconnect(c)
	}
	s := e2etest.Start(t, cmkdbBin, dir, "--key-check-interval", "1s")
	c := connect(t, s.URI)
	coll := c.Database("crash").Collection("docs")
	for _, id := range ackedDocs {
		if err := coll.FindOne(opCtx(t), bson.D{{Key: "_id", Value: id}}).Err(); err != nil {
			t.Fatalf("acknowledged document %d: %v", id, err)
		}
	}
	t.Logf("%d alert configurations and %d documents acknowledged across 5 kills, all present", len(ackedConfigs), len(ackedDocs))
	disconnect(c)
	s.Stop(t)
}
