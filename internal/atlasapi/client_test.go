package atlasapi_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/mongodb-forks/digest"
	"go.mongodb.org/atlas/mongodbatlas"
)

// endpointInjector adds cmkdb's awsKms "endpoint" extension to PATCHes of
// encryptionAtRest: the official client's AwsKms struct has no such field,
// and without it the provider would call the real AWS.
type endpointInjector struct {
	endpoint string
	next     http.RoundTripper
}

func (t endpointInjector) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.Method != http.MethodPatch || !strings.HasSuffix(req.URL.Path, "/encryptionAtRest") || req.Body == nil {
		return t.next.RoundTrip(req)
	}
	b, err := io.ReadAll(req.Body)
	if err != nil {
		return nil, err
	}
	var m map[string]map[string]any
	if err := json.Unmarshal(b, &m); err == nil && m["awsKms"]["customerMasterKeyID"] != nil {
		m["awsKms"]["endpoint"] = t.endpoint
		if b, err = json.Marshal(m); err != nil {
			return nil, err
		}
	}
	out := req.Clone(req.Context())
	out.Body = io.NopCloser(bytes.NewReader(b))
	out.ContentLength = int64(len(b))
	out.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil }
	return t.next.RoundTrip(out)
}

// rawRecorder keeps the raw body of every response, to prove what the
// typed client does not show (an absent secretAccessKey).
type rawRecorder struct {
	next http.RoundTripper
	last []byte
}

func (t *rawRecorder) RoundTrip(req *http.Request) (*http.Response, error) {
	res, err := t.next.RoundTrip(req)
	if err != nil {
		return nil, err
	}
	b, err := io.ReadAll(res.Body)
	res.Body.Close()
	if err != nil {
		return nil, err
	}
	t.last = b
	res.Body = io.NopCloser(bytes.NewReader(b))
	return res, nil
}

// TestOfficialGoClient drives the API with go.mongodb.org/atlas exactly as
// a Terraform-era integration would: projects, AWS KMS encryption at rest,
// a cluster using it, and the typed error of a refusal.
func TestOfficialGoClient(t *testing.T) {
	e := newEnv(t, nil)
	a := newAWS(t)
	keyID, _ := a.srv.CreateSymmetricKey()
	ctx := context.Background()

	rec := &rawRecorder{next: endpointInjector{endpoint: a.srv.URL, next: http.DefaultTransport}}
	httpClient, err := digest.NewTransportWithHTTPRoundTripper(e.root.pub, e.root.priv, rec).Client()
	if err != nil {
		t.Fatal(err)
	}
	client, err := mongodbatlas.New(httpClient, mongodbatlas.SetBaseURL(e.srv.URL+"/"))
	if err != nil {
		t.Fatal(err)
	}

	p, _, err := client.Projects.Create(ctx, &mongodbatlas.Project{Name: "go-client", OrgID: e.svc.Org().ID}, nil)
	if err != nil {
		t.Fatalf("Projects.Create: %v", err)
	}
	if p.ID == "" || p.OrgID != e.svc.Org().ID || p.Name != "go-client" {
		t.Fatalf("created project %+v", p)
	}
	got, _, err := client.Projects.GetOneProject(ctx, p.ID)
	if err != nil || got.ID != p.ID {
		t.Fatalf("GetOneProject: %+v, %v", got, err)
	}
	all, _, err := client.Projects.GetAllProjects(ctx, nil)
	if err != nil || all.TotalCount != 1 || len(all.Results) != 1 || all.Results[0].ID != p.ID {
		t.Fatalf("GetAllProjects: %+v, %v", all, err)
	}

	// A cluster cannot use AWS before the project is configured; the typed
	// error carries Atlas's code.
	_, _, err = client.Clusters.Create(ctx, p.ID, &mongodbatlas.Cluster{Name: "early", EncryptionAtRestProvider: "AWS"})
	var er *mongodbatlas.ErrorResponse
	if !errors.As(err, &er) || er.ErrorCode != "ENCRYPTION_AT_REST_NOT_ENABLED" || er.HTTPCode != http.StatusBadRequest {
		t.Fatalf("cluster before project config: %v", err)
	}

	enabled := true
	ear, _, err := client.EncryptionsAtRest.Create(ctx, &mongodbatlas.EncryptionAtRest{GroupID: p.ID,
		AwsKms: mongodbatlas.AwsKms{Enabled: &enabled, AccessKeyID: a.access, SecretAccessKey: a.secret,
			CustomerMasterKeyID: keyID, Region: mongodbatlas.UsEast1}})
	if err != nil {
		t.Fatalf("EncryptionsAtRest.Create: %v", err)
	}
	if ear.AwsKms.Valid == nil || !*ear.AwsKms.Valid || ear.AwsKms.SecretAccessKey != "" {
		t.Fatalf("PATCH answer %+v", ear.AwsKms)
	}
	ear, _, err = client.EncryptionsAtRest.Get(ctx, p.ID)
	if err != nil {
		t.Fatalf("EncryptionsAtRest.Get: %v", err)
	}
	if ear.AwsKms.Enabled == nil || !*ear.AwsKms.Enabled || ear.AwsKms.Valid == nil || !*ear.AwsKms.Valid ||
		ear.AwsKms.CustomerMasterKeyID != keyID || ear.AwsKms.AccessKeyID != a.access {
		t.Fatalf("GET awsKms %+v", ear.AwsKms)
	}
	if ear.AwsKms.SecretAccessKey != "" || bytes.Contains(rec.last, []byte(a.secret)) || bytes.Contains(rec.last, []byte("secretAccessKey")) {
		t.Fatalf("GET leaks the secret access key: %s", rec.last)
	}

	// Backups need a snapshot store and a provisioner that runs the
	// nodes; this control plane has neither: refused, not ignored.
	_, _, err = client.Clusters.Create(ctx, p.ID, &mongodbatlas.Cluster{Name: "c1", ClusterType: "REPLICASET",
		EncryptionAtRestProvider: "AWS", BackupEnabled: &enabled})
	if !errors.As(err, &er) || er.ErrorCode != "CLOUD_BACKUP_NOT_ENABLED" {
		t.Fatalf("Clusters.Create with backupEnabled and no snapshot store: %v", err)
	}
	cl, _, err := client.Clusters.Create(ctx, p.ID, &mongodbatlas.Cluster{Name: "c1", ClusterType: "REPLICASET",
		EncryptionAtRestProvider: "AWS",
		ProviderSettings:         &mongodbatlas.ProviderSettings{ProviderName: "AWS", InstanceSizeName: "M10", RegionName: "US_EAST_1"}})
	if err != nil {
		t.Fatalf("Clusters.Create: %v", err)
	}
	if cl.EncryptionAtRestProvider != "AWS" || cl.Name != "c1" {
		t.Fatalf("created cluster %+v", cl)
	}
	cl, _, err = client.Clusters.Get(ctx, p.ID, "c1")
	if err != nil || cl.EncryptionAtRestProvider != "AWS" || cl.ProviderSettings == nil || cl.ProviderSettings.InstanceSizeName != "M10" {
		t.Fatalf("Clusters.Get: %+v, %v", cl, err)
	}

	// Disabling while the cluster uses the key is refused.
	_, err = client.EncryptionsAtRest.Delete(ctx, p.ID)
	if !errors.As(err, &er) || er.ErrorCode != "CANNOT_DISABLE_ENCRYPTION_AT_REST" || er.HTTPCode != http.StatusConflict {
		t.Fatalf("disable while used: %v", err)
	}

	cl, _, err = client.Clusters.Update(ctx, p.ID, "c1", &mongodbatlas.Cluster{EncryptionAtRestProvider: "NONE"})
	if err != nil || cl.EncryptionAtRestProvider != "NONE" {
		t.Fatalf("Clusters.Update to NONE: %+v, %v", cl, err)
	}
	if _, err := client.EncryptionsAtRest.Delete(ctx, p.ID); err != nil {
		t.Fatalf("EncryptionsAtRest.Delete: %v", err)
	}
	ear, _, err = client.EncryptionsAtRest.Get(ctx, p.ID)
	if err != nil || ear.AwsKms.Enabled == nil || *ear.AwsKms.Enabled {
		t.Fatalf("after Delete: %+v, %v", ear.AwsKms, err)
	}

	if _, err := client.Clusters.Delete(ctx, p.ID, "c1", nil); err != nil {
		t.Fatalf("Clusters.Delete: %v", err)
	}
	if _, err := client.Projects.Delete(ctx, p.ID); err != nil {
		t.Fatalf("Projects.Delete: %v", err)
	}
	_, _, err = client.Projects.GetOneProject(ctx, p.ID)
	if !errors.As(err, &er) || er.ErrorCode != "GROUP_NOT_FOUND" || er.HTTPCode != http.StatusNotFound {
		t.Fatalf("deleted project: %v", err)
	}
}
