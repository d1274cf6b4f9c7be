package atlasapi_test

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"testing"

	"github.com/cmkdb/cmkdb/internal/testenv"
)

// FuzzPatchEncryptionAtRest feeds arbitrary bodies to the PATCH route of a
// configured project: the answer is always 2xx or 4xx (never a 5xx, never
// a dropped connection from a panic), and every 4xx is Atlas's envelope.
//
// The control plane is set up once per worker and its store is on tmpfs: an
// accepted PATCH is a synced store write, which on a busy machine's disk
// would make the fuzzer measure fsync. Requests reuse one keep-alive
// connection.
func FuzzPatchEncryptionAtRest(f *testing.F) {
	testenv.UseRAMTempDir(f)
	e := newEnv(f, nil)
	gid := e.project("fuzz")
	keyFile := localKey(f)
	url := e.api + "/groups/" + gid + "/encryptionAtRest"
	client := &http.Client{Transport: digestTransport(e.root)}

	seeds := []string{
		`{"local":{"keyFile":"` + keyFile + `"}}`,
		`{"local":{"enabled":false}}`,
		`{"local":{"enabled":true,"keyFile":"/nonexistent/cmk.json"}}`,
		`{"awsKms":{"enabled":true,"customerMasterKeyID":"k","region":"US_EAST_1","accessKeyID":"AKIAEXAMPLE00000","secretAccessKey":"x1234","endpoint":"http://127.0.0.1:1"}}`,
		`{"awsKms":{},"azureKeyVault":{},"googleCloudKms":{}}`,
		`{"azureKeyVault":{"keyIdentifier":"not a url"}}`,
		`{"settings":{"validityCheckIntervalSeconds":60,"masterKeyRotationDays":30}}`,
		`{"settings":{"validityCheckIntervalSeconds":-9223372036854775808}}`,
		`{"awsKms":{"requirePrivateNetworking":true}}`,
		`{"kmip":{"address":"127.0.0.1:1","caFile":"a","clientCertificateFile":"b","clientKeyFile":"c","keyId":"1"}}`,
		`{"enabledForSearchNodes":true,"groupId":"x","keyStatus":{}}`,
		`{"local":null}`, `[]`, `null`, `{`, ``, `{"local":{"keyFile":"\u0000"}}`,
	}
	for _, s := range seeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		req, err := http.NewRequest(http.MethodPatch, url, bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", "application/json")
		res, err := client.Do(req)
		if err != nil {
			t.Fatalf("PATCH %q: %v", body, err)
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		if res.StatusCode >= 500 || res.StatusCode < 200 {
			t.Fatalf("PATCH %q: status %d: %s", body, res.StatusCode, b)
		}
		if res.StatusCode >= 400 {
			var env struct {
				Error     int    `json:"error"`
				ErrorCode string `json:"errorCode"`
			}
			if err := json.Unmarshal(b, &env); err != nil || env.Error != res.StatusCode || env.ErrorCode == "" {
				t.Fatalf("PATCH %q: %d without an envelope: %s", body, res.StatusCode, b)
			}
		}
	})
}
