// Package devkms runs cmkdb's faithful KMS test servers as a development
// service (`cmkdb dev kms-server`): a real wire-protocol endpoint on
// loopback that the official SDKs — and so a cmkdb node — talk to, plus a
// small admin API to change a key's state, deny a permission, throttle,
// fail or stall, so users can watch their deployment handle every
// VALID / INVALID / UNREACHABLE path without a cloud account.
package devkms

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"sync"

	"github.com/cmkdb/cmkdb/internal/kmsserver/awstest"
	"github.com/cmkdb/cmkdb/internal/kmsserver/faults"
	"github.com/cmkdb/cmkdb/internal/kmsserver/vaulttest"
)

// Info is what a client needs to use the service. It holds test
// credentials for a throwaway loopback server, nothing of value; files it
// names (credentials, CA) live in a temporary directory removed by Close.
type Info struct {
	Provider string            `json:"provider"`
	Endpoint string            `json:"endpoint"`
	AdminURL string            `json:"adminUrl"`
	Settings map[string]string `json:"settings"`
}

// Service is a running faithful KMS server and its admin API.
type Service struct {
	Info  Info
	admin *http.Server
	close func()
}

// Close stops both servers.
func (s *Service) Close() {
	s.admin.Close()
	s.close()
}

// Start runs the faithful server for provider ("aws", "vault", "gcp" or
// "azure") and its admin API on adminAddr (e.g. "127.0.0.1:0").
func Start(provider, adminAddr string) (*Service, error) {
	// The admin API has no authentication: it never leaves loopback.
	host, _, err := net.SplitHostPort(adminAddr)
	if ip := net.ParseIP(host); err != nil || (host != "localhost" && (ip == nil || !ip.IsLoopback())) {
		return nil, fmt.Errorf("devkms: the admin API listens on loopback only, not %q", adminAddr)
	}
	mux := http.NewServeMux()
	svc := &Service{}
	switch provider {
	case "aws":
		access, secret := "AKIDCMKDBDEV", randomHex(20)
		srv := awstest.NewServer(awstest.Options{Credentials: map[string]string{access: secret}})
		id, arn := srv.CreateSymmetricKey()
		svc.close = srv.Close
		svc.Info = Info{Provider: "aws", Endpoint: srv.URL, Settings: map[string]string{
			"region": srv.Region, "keyId": arn, "accessKeyId": access, "secretAccessKey": secret}}
		mux.HandleFunc("POST /key/state", func(w http.ResponseWriter, r *http.Request) {
			answer(w, srv.SetKeyState(id, r.URL.Query().Get("value")))
		})
		mux.HandleFunc("POST /key/rotate", func(w http.ResponseWriter, r *http.Request) { answer(w, srv.RotateKey(id)) })
		mux.HandleFunc("POST /deny", func(w http.ResponseWriter, r *http.Request) {
			on, err := strconv.ParseBool(r.URL.Query().Get("on"))
			if err == nil {
				srv.DenyAction(r.URL.Query().Get("action"), on)
			}
			answer(w, err)
		})
		sharedFaults(mux, srv.Faults)
	case "vault":
		srv := vaulttest.New()
		const key = "cmkdb"
		if err := srv.CreateKey(key, "aes256-gcm96"); err != nil {
			srv.Close()
			return nil, err
		}
		token := srv.NewToken(vaulttest.TransitPolicy(srv.Mount, key))
		svc.close = srv.Close
		svc.Info = Info{Provider: "vault", Endpoint: srv.URL, Settings: map[string]string{
			"address": srv.URL, "key": key, "mount": srv.Mount, "token": token}}
		mux.HandleFunc("POST /key/rotate", func(w http.ResponseWriter, r *http.Request) { answer(w, srv.Rotate(key)) })
		mux.HandleFunc("POST /key/min-decryption-version", func(w http.ResponseWriter, r *http.Request) {
			v, err := strconv.Atoi(r.URL.Query().Get("value"))
			if err == nil {
				err = srv.SetMinDecryptionVersion(key, v)
			}
			answer(w, err)
		})
		mux.HandleFunc("POST /token/revoke", func(w http.ResponseWriter, r *http.Request) { srv.RevokeToken(token); answer(w, nil) })
		// Vault deletes keys for good; the dev server keeps a copy so that
		// /key/restore can bring a deleted key back (as a backup would).
		var deleted *vaulttest.KeySnapshot
		var mu sync.Mutex
		mux.HandleFunc("POST /key/delete", func(w http.ResponseWriter, r *http.Request) {
			mu.Lock()
			defer mu.Unlock()
			snap, err := srv.Snapshot(key)
			if err == nil {
				deleted = snap
				srv.DeleteKey(key)
			}
			answer(w, err)
		})
		mux.HandleFunc("POST /key/restore", func(w http.ResponseWriter, r *http.Request) {
			mu.Lock()
			defer mu.Unlock()
			if deleted == nil {
				answer(w, fmt.Errorf("no deleted key to restore"))
				return
			}
			srv.Restore(deleted)
			deleted = nil
			answer(w, nil)
		})
		mux.HandleFunc("POST /seal", func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Query().Get("on") == "false" {
				srv.Unseal()
			} else {
				srv.Seal()
			}
			answer(w, nil)
		})
		sharedFaults(mux, srv.Faults)
	case "gcp":
		if err := startGCP(mux, svc); err != nil {
			return nil, fmt.Errorf("devkms: gcp: %w", err)
		}
	case "azure":
		if err := startAzure(mux, svc); err != nil {
			return nil, fmt.Errorf("devkms: azure: %w", err)
		}
	default:
		return nil, fmt.Errorf("devkms: no faithful server for provider %q (have: aws, vault, gcp, azure)", provider)
	}
	mux.HandleFunc("GET /", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(svc.Info)
	})
	ln, err := net.Listen("tcp", adminAddr)
	if err != nil {
		svc.close()
		return nil, err
	}
	svc.Info.AdminURL = "http://" + ln.Addr().String()
	svc.admin = &http.Server{Handler: mux}
	go svc.admin.Serve(ln)
	return svc, nil
}

// sharedFaults registers the switches every faithful server shares:
// throttling, server errors and stalls (?on=true|false).
func sharedFaults(mux *http.ServeMux, sw *faults.Switches) {
	fail := func(on bool) {
		if on {
			sw.Fail(faults.Internal)
		} else {
			sw.Fail(faults.None)
		}
	}
	for path, set := range map[string]func(bool){"/throttle": sw.Throttle, "/fail5xx": fail, "/stall": sw.Stall} {
		mux.HandleFunc("POST "+path, func(w http.ResponseWriter, r *http.Request) {
			on, err := strconv.ParseBool(r.URL.Query().Get("on"))
			if err == nil {
				set(on)
			}
			answer(w, err)
		})
	}
}

// onOff registers a switch (?on=true|false).
func onOff(mux *http.ServeMux, path string, set func(bool) error) {
	mux.HandleFunc("POST "+path, func(w http.ResponseWriter, r *http.Request) {
		on, err := strconv.ParseBool(r.URL.Query().Get("on"))
		if err == nil {
			err = set(on)
		}
		answer(w, err)
	})
}

func answer(w http.ResponseWriter, err error) {
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}
