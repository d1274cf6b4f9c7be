package devkms

import (
	"encoding/pem"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/cmkdb/cmkdb/internal/kmsserver/azuretest"
)

const (
	devTenant = "72f988bf-86f1-41af-91ab-2d7cd011db47"
	devClient = "0c1d2e3f-4a5b-4c6d-8e7f-9a0b1c2d3e4f"
	devKey    = "cmkdb"
)

// startAzure runs the faithful Key Vault and Azure AD authority (HTTPS,
// bearer challenge, client-secret tokens) with one RSA-2048 key.
//
// The Azure SDK reaches them under Azure's own host names
// (<vault>.vault.azure.net, login.microsoftonline.com): a client sends
// every request to the "endpoint" setting and trusts caFile, which a node
// file's azure block and the API's azureKeyVault object both accept.
//
// Admin API:
//
//	/key/state?value=enabled|disabled|deleted|expired|not-yet-active
//	    (deleted is Key Vault's soft delete, recoverable: enabled recovers it)
//	/key/rotate                        new current version
//	/deny?permission=get|wrapKey|unwrapKey&on=true|false
//	/credentials/revoke?on=true|false  the client secret is rotated away
func startAzure(mux *http.ServeMux, svc *Service) error {
	dir, err := os.MkdirTemp("", "cmkdb-devkms-azure-")
	if err != nil {
		return err
	}
	secret := randomHex(20)
	srv := azuretest.NewServer(azuretest.Options{TenantID: devTenant, ClientID: devClient, ClientSecret: secret})
	svc.close = func() { srv.Close(); os.RemoveAll(dir) }
	srv.CreateRSAKey(devKey, 2048)
	secretFile, caFile := filepath.Join(dir, "client-secret"), filepath.Join(dir, "ca.pem")
	ca := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})
	for path, data := range map[string][]byte{secretFile: []byte(secret + "\n"), caFile: ca} {
		if err := os.WriteFile(path, data, 0o600); err != nil {
			svc.close()
			return err
		}
	}
	svc.Info = Info{Provider: "azure", Endpoint: srv.URL, Settings: map[string]string{
		"vaultUrl": srv.VaultURL(), "keyName": devKey, "tenantId": devTenant, "clientId": devClient,
		"clientSecret": secret, "clientSecretFile": secretFile, "caFile": caFile, "endpoint": srv.Addr()}}

	mux.HandleFunc("POST /key/state", func(w http.ResponseWriter, r *http.Request) {
		answer(w, setAzureState(srv, r.URL.Query().Get("value")))
	})
	mux.HandleFunc("POST /key/rotate", func(w http.ResponseWriter, r *http.Request) {
		_, err := srv.RotateKey(devKey)
		answer(w, err)
	})
	mux.HandleFunc("POST /deny", func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		on, err := strconv.ParseBool(q.Get("on"))
		switch perm := q.Get("permission"); {
		case err != nil:
		case perm != azuretest.PermGet && perm != azuretest.PermWrapKey && perm != azuretest.PermUnwrapKey:
			err = fmt.Errorf("unknown permission %q (get, wrapKey, unwrapKey)", perm)
		default:
			srv.Deny(perm, on)
		}
		answer(w, err)
	})
	onOff(mux, "/credentials/revoke", func(on bool) error {
		if on {
			srv.SetClientSecret(secret + "-revoked")
		} else {
			srv.SetClientSecret(secret)
		}
		return nil
	})
	sharedFaults(mux, srv.Faults)
	return nil
}

// setAzureState moves the key to one state. Every state starts from an
// enabled, active, unexpired key, so states do not pile up.
func setAzureState(srv *azuretest.Server, state string) error {
	_ = srv.RecoverKey(devKey) // fails when the key is not deleted
	for _, err := range []error{srv.SetEnabled(devKey, true), srv.SetNotBefore(devKey, nil), srv.SetExpires(devKey, nil)} {
		if err != nil {
			return err
		}
	}
	hour := time.Hour
	at := func(d time.Duration) *time.Time { t := time.Now().Add(d); return &t }
	switch state {
	case "enabled":
		return nil
	case "disabled":
		return srv.SetEnabled(devKey, false)
	case "deleted":
		return srv.DeleteKey(devKey)
	case "expired":
		return srv.SetExpires(devKey, at(-hour))
	case "not-yet-active":
		return srv.SetNotBefore(devKey, at(hour))
	}
	return fmt.Errorf("unknown state %q (enabled, disabled, deleted, expired, not-yet-active)", state)
}
