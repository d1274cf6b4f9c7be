package e2e

import (
	"errors"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"testing"
	"time"

	"go.mongodb.org/atlas/mongodbatlas"
	"go.mongodb.org/mongo-driver/v2/bson"
)

// TestClusterLifecycleThroughAtlasClient: the official Atlas Go client
// creates a second cluster on cmkdb up's control plane, which starts its
// node; the cluster serves the MongoDB wire protocol at the connection
// string the API reports, encrypted under the project's CMK; deleting it
// stops the node and destroys its keys and data.
func TestClusterLifecycleThroughAtlasClient(t *testing.T) {
	s := startServer(t, "--key-check-interval", "1h")
	api := s.UpAPI()
	atlas := api.Atlas(t)
	gid := s.Info.GroupID

	c, _, err := atlas.Clusters.Create(opCtx(t), gid, &mongodbatlas.Cluster{Name: "Extra", EncryptionAtRestProvider: "LOCAL",
		ProviderSettings: &mongodbatlas.ProviderSettings{ProviderName: "AWS", InstanceSizeName: "M10", RegionName: "US_EAST_1"}})
	if err != nil {
		t.Fatalf("Atlas client Clusters.Create: %v", err)
	}
	if c.ConnectionStrings == nil || c.ConnectionStrings.Standard == "" {
		t.Fatalf("created cluster has no connection string: %+v", c)
	}
	extraURI := c.ConnectionStrings.Standard
	client := connect(t, extraURI)
	if _, err := client.Database("extra").Collection("c").InsertOne(opCtx(t), bson.D{{Key: "x", Value: 1}}); err != nil {
		t.Fatalf("insert into the new cluster: %v", err)
	}
	nodes := clusterNodes(t, api, gid, "Extra")
	if len(nodes) != 1 || nodes[0].State != "AVAILABLE" || nodes[0].CMK.Provider != "local" {
		t.Fatalf("new cluster's nodes: %+v", nodes)
	}
	got, _, err := atlas.Clusters.Get(opCtx(t), gid, "Extra")
	if err != nil || got.EncryptionAtRestProvider != "LOCAL" {
		t.Fatalf("Clusters.Get: %+v %v", got, err)
	}
	disconnect(client)

	if _, err := atlas.Clusters.Delete(opCtx(t), gid, "Extra", nil); err != nil {
		t.Fatalf("Clusters.Delete: %v", err)
	}
	_, _, err = atlas.Clusters.Get(opCtx(t), gid, "Extra")
	var er *mongodbatlas.ErrorResponse
	if !errors.As(err, &er) || er.ErrorCode != "CLUSTER_NOT_FOUND" {
		t.Fatalf("Get after delete: %v", err)
	}
	u, _ := url.Parse(extraURI)
	if conn, err := net.DialTimeout("tcp", u.Host, time.Second); err == nil {
		conn.Close()
		t.Fatalf("the deleted cluster still listens on %s", u.Host)
	}
	if _, err := os.Stat(filepath.Join(s.Dir, "clusters", gid, "Extra")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("the deleted cluster's directory is still there: %v", err)
	}
	c0 := connect(t, s.URI)
	if _, err := c0.Database("x").Collection("y").InsertOne(opCtx(t), bson.D{{Key: "ok", Value: true}}); err != nil {
		t.Fatalf("Cluster0 after deleting another cluster: %v", err)
	}
	disconnect(c0)
	s.Stop(t)
}
