package main

import (
	"net/http"
	"net/url"
	"testing"
	"time"

	"github.com/mcpauth/mcpauth/internal/testredis"
)

// TestReplicasLockout: three processes on one Redis. Wrong secrets for a
// client, three on replica 1 and two on replica 2, add up to the default
// threshold of five: within a few sync intervals the client is locked out
// (429 with Retry-After) on replica 3 too, its right secret included.
func TestReplicasLockout(t *testing.T) {
	rs := testredis.Start(t)
	r := replicas(t, rs.URL(), 3, nil)
	c := register(t, r[0].base, true, nil)
	wrong := oauthClient{id: c.id, secret: c.secret + "-wrong"}
	form := func() url.Values {
		return url.Values{"grant_type": {"refresh_token"}, "refresh_token": {"not-a-refresh-token"}}
	}
	for i := range 5 {
		if st, _, tk := tokenRequest(t, r[i/3].base, wrong, form(), nil); st != http.StatusUnauthorized || tk.Error != "invalid_client" {
			t.Fatalf("wrong secret %d: %d %+v", i+1, st, tk)
		}
	}
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		st, h, tk := tokenRequest(t, r[2].base, c, form(), nil)
		if st == http.StatusTooManyRequests {
			if h.Get("Retry-After") == "" || tk.Error != "temporarily_unavailable" {
				t.Fatalf("locked out: %v %+v", h, tk)
			}
			break
		}
		if st != http.StatusBadRequest || tk.Error != "invalid_grant" {
			t.Fatalf("right secret before the lockout reached replica 3: %d %+v", st, tk)
		}
		if time.Now().After(deadline) {
			t.Fatal("replica 3 never learnt the lockout")
		}
	}
}
