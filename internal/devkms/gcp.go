package devkms

import (
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"cloud.google.com/go/kms/apiv1/kmspb"
	"google.golang.org/grpc/codes"

	"github.com/cmkdb/cmkdb/internal/kmsserver/gcptest"
)

// startGCP runs the faithful Cloud KMS (gRPC over TLS, service account JWTs
// verified) with one ENCRYPT_DECRYPT key, and writes the files a node
// configuration points at: the service account key and the test CA.
//
// Admin API:
//
//	/key/state?value=ENABLED|DISABLED|DESTROY_SCHEDULED|DESTROYED|PENDING_GENERATION[&version=N]
//	    (default: the primary version)
//	/key/rotate                       new primary version
//	/key/purpose?value=ASYMMETRIC_SIGN|ENCRYPT_DECRYPT
//	/key/hide?on=true|false           NOT_FOUND
//	/deny?permission=cloudkms.cryptoKeyVersions.useToDecrypt|...|all&on=true|false
//	/credentials/disable?on=true|false  the service account key is disabled
//	/unavailable?on=true|false        UNAVAILABLE (fail5xx is INTERNAL)
//	/corrupt?n=N                      damage the next N responses' ciphertext CRC32C
func startGCP(mux *http.ServeMux, svc *Service) error {
	dir, err := os.MkdirTemp("", "cmkdb-devkms-gcp-")
	if err != nil {
		return err
	}
	srv, err := gcptest.NewServer(gcptest.Options{Project: "cmkdb-dev"})
	if err != nil {
		os.RemoveAll(dir)
		return err
	}
	svc.close = func() { srv.Close(); os.RemoveAll(dir) }
	fail := func(err error) error { svc.close(); return err }
	keyName, err := srv.CreateKey("cmkdb", kmspb.CryptoKey_ENCRYPT_DECRYPT)
	if err != nil {
		return fail(err)
	}
	sa, err := srv.NewServiceAccount("cmkdb-node")
	if err != nil {
		return fail(err)
	}
	credsFile, caFile := filepath.Join(dir, "service-account.json"), filepath.Join(dir, "ca.pem")
	for path, data := range map[string][]byte{credsFile: sa.JSON, caFile: srv.CAPEM()} {
		if err := os.WriteFile(path, data, 0o600); err != nil {
			return fail(err)
		}
	}
	svc.Info = Info{Provider: "gcp", Endpoint: srv.Addr(), Settings: map[string]string{
		"keyName": keyName, "credentialsFile": credsFile, "endpoint": srv.Addr(), "caFile": caFile,
		"serviceAccount": sa.Email}}

	mux.HandleFunc("POST /key/state", func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		st, ok := kmspb.CryptoKeyVersion_CryptoKeyVersionState_value[normalizeEnum(q.Get("value"))]
		if !ok {
			answer(w, fmt.Errorf("unknown state %q (ENABLED, DISABLED, DESTROY_SCHEDULED, DESTROYED, PENDING_GENERATION)", q.Get("value")))
			return
		}
		version := srv.PrimaryVersion(keyName)
		if v := q.Get("version"); v != "" {
			if _, err := strconv.Atoi(v); err != nil {
				answer(w, fmt.Errorf("version %q is not a number", v))
				return
			}
			version = keyName + "/cryptoKeyVersions/" + v
		}
		answer(w, srv.SetVersionState(version, kmspb.CryptoKeyVersion_CryptoKeyVersionState(st)))
	})
	mux.HandleFunc("POST /key/rotate", func(w http.ResponseWriter, r *http.Request) {
		_, err := srv.RotateKey(keyName)
		answer(w, err)
	})
	mux.HandleFunc("POST /key/purpose", func(w http.ResponseWriter, r *http.Request) {
		p, ok := kmspb.CryptoKey_CryptoKeyPurpose_value[normalizeEnum(r.URL.Query().Get("value"))]
		if !ok {
			answer(w, fmt.Errorf("unknown purpose %q", r.URL.Query().Get("value")))
			return
		}
		answer(w, srv.SetPurpose(keyName, kmspb.CryptoKey_CryptoKeyPurpose(p)))
	})
	onOff(mux, "/key/hide", func(on bool) error { return srv.HideKey(keyName, on) })
	onOff(mux, "/credentials/disable", func(on bool) error { return srv.DisableServiceAccountKey(sa.KeyID, on) })
	mux.HandleFunc("POST /deny", func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		on, err := strconv.ParseBool(q.Get("on"))
		switch perm := q.Get("permission"); {
		case err != nil:
		case perm == "all":
			srv.DenyAll(on)
		default:
			err = srv.Deny(perm, on)
		}
		answer(w, err)
	})
	onOff(mux, "/unavailable", func(on bool) error { srv.Fail(failCode(on, codes.Unavailable)); return nil })
	mux.HandleFunc("POST /corrupt", func(w http.ResponseWriter, r *http.Request) {
		n, err := strconv.Atoi(r.URL.Query().Get("n"))
		if err == nil {
			srv.CorruptNext(gcptest.CorruptCiphertextCRC, n)
		}
		answer(w, err)
	})
	sharedFaults(mux, srv.Faults)
	return nil
}

func failCode(on bool, c codes.Code) codes.Code {
	if on {
		return c
	}
	return codes.OK
}

// normalizeEnum accepts "destroy-scheduled" for DESTROY_SCHEDULED.
func normalizeEnum(s string) string { return strings.ToUpper(strings.ReplaceAll(s, "-", "_")) }
