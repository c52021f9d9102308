package config

import (
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hookbridge/hookbridge/bridge/event"
	"github.com/hookbridge/hookbridge/bridge/route"
	"github.com/hookbridge/hookbridge/bridge/signature"
)

// routingGuide is the page whose recipes TestRoutingRecipes loads.
const routingGuide = "../../docs/routing.md"

// TestRoutingRecipes loads each route of the routing guide's Recipes
// section, as printed, into a config and checks which events it takes: a
// recipe that stopped loading or matching as the page says fails here.
func TestRoutingRecipes(t *testing.T) {
	page, err := os.ReadFile(routingGuide)
	if err != nil {
		t.Fatal(err)
	}
	section := string(page)
	section = section[strings.Index(section, "\n## Recipes\n"):]
	section = section[:strings.Index(section[1:], "\n## ")+1]
	var routes []string
	for block := range strings.SplitSeq(section, "```yaml\n") {
		if end := strings.Index(block, "```"); end > 0 && strings.HasPrefix(block, "- name:") {
			routes = append(routes, block[:end])
		}
	}
	if len(routes) != 5 {
		t.Fatalf("%d recipes in %s, want 5", len(routes), routingGuide)
	}
	var file strings.Builder
	file.WriteString("sources: [{name: browser-use, secrets: [whsec_x]}]\nsinks: [{name: bus, type: nats, url: embedded, jetstream: true}]\nroutes:\n")
	for _, r := range routes {
		for line := range strings.SplitSeq(strings.TrimRight(r, "\n"), "\n") {
			file.WriteString("  " + line + "\n")
		}
	}
	cfg, err := Parse("recipes.yaml", []byte(file.String()), nil)
	if err != nil {
		t.Fatalf("the recipes do not load: %v\n%s", err, file.String())
	}
	router := route.New(cfg.Rules())

	// Friday 2026-12-04: 09:30 in Paris is 08:30 UTC.
	office := time.Date(2026, 12, 4, 8, 30, 0, 0, time.UTC)
	night := time.Date(2026, 12, 4, 20, 0, 0, 0, time.UTC)
	saturday := time.Date(2026, 12, 5, 10, 0, 0, 0, time.UTC)
	tests := []struct {
		name   string
		sample event.Sample
		routes []string
	}{
		{"vip finished", event.Sample{Status: "finished", Time: night, Metadata: map[string]string{"tier": "vip"}}, []string{"vip-finished", "not-staging"}},
		{"free finished", event.Sample{Status: "finished", Time: night, Metadata: map[string]string{"tier": "free"}}, []string{"not-staging"}},
		{"no metadata", event.Sample{Status: "finished", Time: night}, []string{"not-staging"}},
		{"flat body", event.Sample{Status: "paused", Flat: true}, []string{"not-staging"}},
		{"growth paused", event.Sample{Status: "paused", Time: night, Metadata: map[string]string{"team": "growth"}}, []string{"team-alerts", "not-staging"}},
		{"unlisted team", event.Sample{Status: "paused", Time: night, Metadata: map[string]string{"team": "legal"}}, []string{"not-staging"}},
		{"staging", event.Sample{Status: "stopped", Time: night, Metadata: map[string]string{"env": "staging", "team": "ops"}}, []string{"team-alerts"}},
		{"urgent flag", event.Sample{Status: "started", Time: night, Metadata: map[string]string{"urgent": "True"}}, []string{"not-staging", "urgent"}},
		{"flag off", event.Sample{Status: "started", Time: night, Metadata: map[string]string{"urgent": "false"}}, []string{"not-staging"}},
		{"stopped in office hours", event.Sample{Status: "stopped", Time: office}, []string{"not-staging", "office-hours"}},
		{"stopped on Saturday", event.Sample{Status: "stopped", Time: saturday}, []string{"not-staging"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.sample.TaskID = "t1"
			var cz signature.Canonicalizer
			c, err := cz.Canonicalize(tt.sample.Body())
			if err != nil {
				t.Fatal(err)
			}
			ev, err := event.Normalize("browser-use", "1796407200", night, c, event.Trace{})
			if err != nil {
				t.Fatal(err)
			}
			got := router.Route(ev)
			if !slices.Equal(got.Routes, tt.routes) || len(got.Failed) > 0 {
				t.Errorf("routes %v (failed %v), want %v", got.Routes, got.Failed, tt.routes)
			}
		})
	}
}
