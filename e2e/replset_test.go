package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
	"go.mongodb.org/mongo-driver/v2/mongo/readpref"
	"go.mongodb.org/mongo-driver/v2/mongo/writeconcern"

	"github.com/cmkdb/cmkdb/e2e/e2etest"
	"github.com/cmkdb/cmkdb/internal/kms/local"
	"github.com/cmkdb/cmkdb/internal/repl/transport"
	"github.com/cmkdb/cmkdb/internal/tlsutil"
)

// replSet is three `cmkdb node` processes forming a replica set, each with
// its own data directory, local CMK and member certificate.
type replSet struct {
	t       *testing.T
	name    string
	dirs    []string
	configs []string
	hosts   []string
	procs   []*e2etest.Server
}

func startReplSet(t *testing.T, n int) *replSet {
	t.Helper()
	return startReplSetWith(t, n, nil)
}

// startReplSetWith is startReplSet with each member's kms block from
// kmsFor (nil: a local CMK per member).
func startReplSetWith(t *testing.T, n int, kmsFor func(i int) map[string]any) *replSet {
	t.Helper()
	return startReplSetConfig(t, n, kmsFor, nil)
}

// startReplSetConfig is startReplSetWith with extra settings in every
// member's node file.
func startReplSetConfig(t *testing.T, n int, kmsFor func(i int) map[string]any, extra map[string]any) *replSet {
	t.Helper()
	rs := &replSet{t: t, name: "rs0"}
	ca, err := tlsutil.NewCA("e2e members CA", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	pki := t.TempDir()
	caFile := filepath.Join(pki, "ca.pem")
	if err := os.WriteFile(caFile, ca.CertPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	type member struct {
		Name     string `json:"name"`
		Host     string `json:"host"`
		RaftAddr string `json:"raftAddr"`
	}
	var members []member
	ports := make([]int, n)
	for i := range n {
		ports[i] = freePort(t)
		members = append(members, member{Name: "m" + strconv.Itoa(i), Host: fmt.Sprintf("127.0.0.1:%d", ports[i]),
			RaftAddr: fmt.Sprintf("127.0.0.1:%d", freePort(t))})
		rs.hosts = append(rs.hosts, members[i].Host)
	}
	for i := range n {
		dir := t.TempDir()
		var kmsBlock map[string]any
		if kmsFor != nil {
			kmsBlock = kmsFor(i)
		} else {
			cmkFile := filepath.Join(t.TempDir(), "cmk.json")
			if _, _, err := local.Ensure(cmkFile); err != nil {
				t.Fatal(err)
			}
			kmsBlock = map[string]any{"provider": "local", "local": map[string]any{"keyFile": cmkFile}}
		}
		id := transport.Identity{Project: "e2e", Cluster: rs.name, Member: members[i].Name}
		certPEM, keyPEM, err := ca.MemberCertificate(id.CommonName(), []string{"127.0.0.1"}, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		certFile, keyFile := filepath.Join(pki, members[i].Name+".pem"), filepath.Join(pki, members[i].Name+".key")
		os.WriteFile(certFile, certPEM, 0o600)
		os.WriteFile(keyFile, keyPEM, 0o600)
		cfg := map[string]any{"dir": dir, "port": ports[i], "keyCheckInterval": "1s",
			"kms": kmsBlock,
			"replication": map[string]any{"setName": rs.name, "project": "e2e", "me": members[i].Name, "members": members,
				"certFile": certFile, "keyFile": keyFile, "caFile": caFile,
				// Frequent snapshots, so kills land after them and a member
				// restarted far behind is sent one.
				"snapshotThreshold": 64, "snapshotInterval": "500ms", "trailingLogs": 32}}
		for k, v := range extra {
			cfg[k] = v
		}
		js, _ := json.Marshal(cfg)
		cfgFile := filepath.Join(pki, members[i].Name+".json")
		if err := os.WriteFile(cfgFile, js, 0o600); err != nil {
			t.Fatal(err)
		}
		rs.dirs, rs.configs = append(rs.dirs, dir), append(rs.configs, cfgFile)
		rs.procs = append(rs.procs, nil)
	}
	for i := range n {
		rs.start(i)
	}
	return rs
}

func (rs *replSet) start(i int) {
	rs.t.Helper()
	rs.procs[i] = e2etest.StartCommand(rs.t, cmkdbBin, rs.dirs[i], "node", "--config", rs.configs[i])
}

// role asks member i for its role: "PRIMARY", "SECONDARY", or "" when it
// does not answer or is neither.
func (rs *replSet) role(ctx context.Context, i int) string {
	c, err := mongo.Connect(options.Client().ApplyURI("mongodb://" + rs.hosts[i] + "/?directConnection=true").
		SetServerSelectionTimeout(2 * time.Second).SetConnectTimeout(time.Second))
	if err != nil {
		return ""
	}
	defer func() {
		dctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_ = c.Disconnect(dctx)
	}()
	var hello struct {
		Primary   bool `bson:"isWritablePrimary"`
		Secondary bool `bson:"secondary"`
	}
	hctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	if err := c.Database("admin").RunCommand(hctx, bson.D{{Key: "hello", Value: 1}}).Decode(&hello); err != nil {
		return ""
	}
	switch {
	case hello.Primary:
		return "PRIMARY"
	case hello.Secondary:
		return "SECONDARY"
	}
	return ""
}

// primary waits for one member to be primary and returns it.
func (rs *replSet) primary(ctx context.Context) int {
	rs.t.Helper()
	deadline := time.Now().Add(e2etest.Scaled(time.Minute))
	for time.Now().Before(deadline) {
		for i := range rs.hosts {
			if rs.role(ctx, i) == "PRIMARY" {
				return i
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	rs.t.Fatal("no primary within a minute")
	return -1
}

// TestReplicaSetSurvivesKill9 kills the primary's process with SIGKILL at a
// random moment while a writer writes with w:"majority", twenty times,
// restarting it each time. Every acknowledged write must be on every
// member at the end, and the set must elect a new primary each time
// (failover times are logged: docs/benchmarks.md).
func TestReplicaSetSurvivesKill9(t *testing.T) {
	rs := startReplSet(t, 3)
	ctx := context.Background()
	client := quickClient(t, rs.procs[0].URI)
	coll := client.Database("app").Collection("acked", options.Collection().SetWriteConcern(writeconcern.Majority()))

	var mu sync.Mutex
	acked := map[int]bool{}
	stop := make(chan struct{})
	writerDone := make(chan struct{})
	lastAck := make(chan time.Time, 1)
	go func() {
		defer close(writerDone)
		for id := 0; ; id++ {
			for {
				select {
				case <-stop:
					return
				default:
				}
				wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
				_, err := coll.InsertOne(wctx, bson.D{{Key: "_id", Value: id}})
				cancel()
				if err == nil || mongo.IsDuplicateKeyError(err) {
					// A duplicate: an earlier attempt whose answer was lost
					// did commit.
					mu.Lock()
					acked[id] = true
					mu.Unlock()
					select {
					case <-lastAck:
					default:
					}
					lastAck <- time.Now()
					break
				}
				time.Sleep(20 * time.Millisecond)
			}
		}
	}()
	ackedCount := func() int { mu.Lock(); defer mu.Unlock(); return len(acked) }

	// A second writer increments a counter with retryable writes (the
	// drivers' default): the driver retries an increment whose reply a
	// kill lost, and the set must apply it once. Increments that failed
	// have an unknown outcome, so at the end
	// acknowledged ≤ counter ≤ acknowledged + failed.
	rc, err := mongo.Connect(options.Client().ApplyURI(rs.procs[0].URI).SetRetryWrites(true))
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		dctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		_ = rc.Disconnect(dctx)
	}()
	counter := rc.Database("app").Collection("counter", options.Collection().SetWriteConcern(writeconcern.Majority()))
	var incAcked, incFailed int
	incDone := make(chan struct{})
	go func() {
		defer close(incDone)
		for {
			select {
			case <-stop:
				return
			default:
			}
			wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			_, err := counter.UpdateOne(wctx, bson.D{{Key: "_id", Value: "c"}}, bson.D{{Key: "$inc", Value: bson.D{{Key: "n", Value: 1}}}},
				options.UpdateOne().SetUpsert(true))
			cancel()
			mu.Lock()
			if err == nil {
				incAcked++
			} else {
				incFailed++
			}
			mu.Unlock()
			if err != nil {
				time.Sleep(50 * time.Millisecond)
			}
		}
	}()

	const rounds = 20
	var failovers []time.Duration
	restores := 0
	for round := 0; round < rounds; round++ {
		p := rs.primary(ctx)
		// Let some writes through this primary, then kill it at a random
		// moment.
		before := ackedCount()
		e2etest.Eventually(t, e2etest.Scaled(time.Minute), "writes through the primary", func() error {
			if ackedCount() < before+3 {
				return errors.New("fewer than 3 new acknowledged writes")
			}
			return nil
		})
		time.Sleep(time.Duration(rand.IntN(300)) * time.Millisecond)
		rs.procs[p].Kill(t)
		killed := time.Now()
		// A write acknowledged after the kill came through the new primary.
		deadline := time.Now().Add(e2etest.Scaled(time.Minute))
		for {
			var at time.Time
			select {
			case at = <-lastAck:
			case <-time.After(time.Until(deadline)):
				t.Fatalf("round %d: no write acknowledged within a minute of killing the primary", round)
			}
			if at.After(killed) {
				failovers = append(failovers, at.Sub(killed))
				break
			}
		}
		if round%4 == 3 {
			// Now and then the killed member stays down while the set
			// writes on, past what the log keeps: it must catch up from a
			// snapshot.
			after := ackedCount()
			e2etest.Eventually(t, e2etest.Scaled(time.Minute), "writes while a member is down", func() error {
				if ackedCount() < after+200 {
					return errors.New("fewer than 200 writes")
				}
				return nil
			})
		}
		restores += strings.Count(rs.procs[p].Output.String(), "caught up from a snapshot")
		rs.start(p)
	}
	close(stop)
	<-writerDone
	<-incDone

	var cdoc struct {
		N int `bson:"n"`
	}
	if err := counter.FindOne(opCtx(t), bson.D{{Key: "_id", Value: "c"}}).Decode(&cdoc); err != nil {
		t.Fatal(err)
	}
	t.Logf("counter %d: %d increments acknowledged, %d failed (unknown outcome)", cdoc.N, incAcked, incFailed)
	if cdoc.N < incAcked || cdoc.N > incAcked+incFailed {
		t.Fatalf("counter %d outside [%d, %d]: a retried increment was applied twice or an acknowledged one lost", cdoc.N, incAcked, incAcked+incFailed)
	}

	sort.Slice(failovers, func(i, j int) bool { return failovers[i] < failovers[j] })
	t.Logf("%d failovers: median %s, max %s (kill -9 of the primary to the next acknowledged w:majority write)",
		len(failovers), failovers[len(failovers)/2], failovers[len(failovers)-1])

	for _, p := range rs.procs {
		restores += strings.Count(p.Output.String(), "caught up from a snapshot")
	}
	t.Logf("members restarted behind the compacted log caught up from a snapshot %d times", restores)
	if restores == 0 {
		t.Fatal("no restarted member caught up from a snapshot: the test did not exercise snapshot installs")
	}

	// Every acknowledged write is on every member.
	mu.Lock()
	want := len(acked)
	mu.Unlock()
	for i, h := range rs.hosts {
		c := quickClient(t, "mongodb://"+h+"/?directConnection=true")
		sec := c.Database("app", options.Database().SetReadPreference(readpref.SecondaryPreferred())).Collection("acked")
		e2etest.Eventually(t, e2etest.Scaled(2*time.Minute), fmt.Sprintf("member %d holds every acknowledged write", i), func() error {
			cur, err := sec.Find(opCtx(t), bson.D{})
			if err != nil {
				return err
			}
			var docs []struct {
				ID int `bson:"_id"`
			}
			if err := cur.All(opCtx(t), &docs); err != nil {
				return err
			}
			have := map[int]bool{}
			for _, d := range docs {
				have[d.ID] = true
			}
			mu.Lock()
			defer mu.Unlock()
			for id := range acked {
				if !have[id] {
					return fmt.Errorf("acknowledged _id %d missing (%d of %d present)", id, len(have), want)
				}
			}
			return nil
		})
	}
	t.Logf("%d acknowledged writes present on all %d members", want, len(rs.hosts))
}
