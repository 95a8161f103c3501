package main

import (
	"context"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/mcpauth/mcpauth"
	"github.com/mcpauth/mcpauth/internal/mcptest"
	"github.com/modelcontextprotocol/go-sdk/mcp"
)

func TestExampleRoles(t *testing.T) {
	keys := map[string]string{}
	var env []string
	for _, role := range []string{"viewer", "editor", "admin"} {
		k, err := mcpauth.GenerateAPIKey()
		if err != nil {
			t.Fatal(err)
		}
		keys[role] = k
		env = append(env, k+":"+role+"-user:"+role)
	}
	h, generated, err := newHandler(strings.Join(env, ","), tutorialPolicy())
	if err != nil || generated != nil {
		t.Fatal(generated, err)
	}
	srv := mcptest.Serve(t, h)
	mode := mcptest.Modes[0] // the example serves stateful sessions
	want := map[string][]string{
		"viewer": {"read-data"},
		"editor": {"read-data", "write-data"},
		"admin":  {"delete-data", "manage-users", "read-data", "write-data"},
	}
	ctx := context.Background()
	for role, tools := range want {
		cs, err := mcptest.Connect(t, mode, srv.URL+"/mcp", mcptest.NewHeaders("X-API-Key", keys[role]))
		if err != nil {
			t.Fatal(err)
		}
		if names, _ := mcptest.ToolNames(t, cs); !slices.Equal(names, tools) {
			t.Errorf("%s lists %v, want %v", role, names, tools)
		}
		r, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: "read-data", Arguments: map[string]any{"key": "greeting"}})
		if err != nil || r.IsError {
			t.Errorf("%s read-data: %v %v", role, r, err)
		}
		r, err = cs.CallTool(ctx, &mcp.CallToolParams{Name: "manage-users", Arguments: map[string]any{"user": "bob", "role": "viewer"}})
		if err != nil || r.IsError != (role != "admin") {
			t.Errorf("%s manage-users: %v %v", role, r, err)
		}
	}
}

func TestExampleGeneratesKeys(t *testing.T) {
	_, generated, err := newHandler("", tutorialPolicy())
	if err != nil {
		t.Fatal(err)
	}
	var roles []string
	for _, k := range generated {
		roles = append(roles, k.Roles...)
	}
	if !slices.Equal(roles, []string{"viewer", "editor", "admin"}) {
		t.Errorf("generated keys for %v", roles)
	}
}

func TestExampleRefusesUnknownRole(t *testing.T) {
	k, _ := mcpauth.GenerateAPIKey()
	_, _, err := newHandler(k+":bob:administrator", tutorialPolicy())
	if err == nil || !strings.Contains(err.Error(), `"administrator"`) || strings.Contains(err.Error(), k) {
		t.Errorf("err = %v", err)
	}
}

// TestExamplePolicyFile: the shipped policy file is the policy built in Go.
func TestExamplePolicyFile(t *testing.T) {
	p, err := mcpauth.LoadPolicy("policy.yaml")
	if err != nil {
		t.Fatal(err)
	}
	want := tutorialPolicy()
	want.Roles["viewer"] = []string{}
	if !reflect.DeepEqual(p, want) {
		t.Errorf("policy.yaml = %+v\nwant %+v", p, want)
	}
}
