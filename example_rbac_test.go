package mcpauth_test

import (
	"fmt"
	"log"

	"github.com/mcpauth/mcpauth"
)

// A policy file with inheritance, a prefix rule, a scope and a rate limit,
// and what it decides for three callers.
func ExampleParsePolicy() {
	policy, err := mcpauth.ParsePolicy([]byte(`
roles:
  admin: [editor]
  editor: [viewer]
  viewer: []
rules:
  - {tool: read-data, roles: [viewer], rate_limit: 100/min}
  - {tool: "reports.*", roles: [viewer]}
  - {tool: write-data, roles: [editor], scopes: ["tools:write"]}
  - {tool: delete-data, roles: [admin]}
`))
	if err != nil {
		log.Fatal(err)
	}
	guard, err := mcpauth.NewGuard(policy, nil)
	if err != nil {
		log.Fatal(err)
	}
	callers := []*mcpauth.Principal{
		{Subject: "vera", Roles: []string{"viewer"}},
		{Subject: "eddie", Roles: []string{"editor"}},
		{Subject: "ada", Roles: []string{"admin"}, Scopes: []string{"tools:write"}},
	}
	for _, p := range callers {
		for _, tool := range []string{"reports.daily", "write-data", "delete-data", "drop-tables"} {
			if err := guard.Check(p, tool); err != nil {
				fmt.Printf("%s %s: %v\n", p.Subject, tool, err)
			} else {
				fmt.Printf("%s %s: allowed\n", p.Subject, tool)
			}
		}
	}
	// Output:
	// vera reports.daily: allowed
	// vera write-data: mcpauth: access denied: tool "write-data" requires role editor and scope tools:write
	// vera delete-data: mcpauth: access denied: tool "delete-data" requires role admin
	// vera drop-tables: mcpauth: access denied: no rule allows this tool
	// eddie reports.daily: allowed
	// eddie write-data: mcpauth: access denied: tool "write-data" requires scope tools:write
	// eddie delete-data: mcpauth: access denied: tool "delete-data" requires role admin
	// eddie drop-tables: mcpauth: access denied: no rule allows this tool
	// ada reports.daily: allowed
	// ada write-data: allowed
	// ada delete-data: allowed
	// ada drop-tables: mcpauth: access denied: no rule allows this tool
}
