package deploy

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"net"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/hookbridge/hookbridge/bridge"
	natssink "github.com/hookbridge/hookbridge/sinks/nats"
)

// The files under test, relative to this package's directory.
const (
	dockerfile       = "Dockerfile"
	dockerignore     = "Dockerfile.dockerignore"
	kubernetesDir    = "kubernetes"
	systemdUnit      = "systemd/hookbridge.service"
	readme           = "README.md"
	hookbridgeBinary = "/usr/local/bin/hookbridge"
)

// secretEnv is the variable the shipped configs read the webhook secret
// from. Outside Kubernetes (Docker, systemd) nothing in this directory
// declares the environment, so it is the one name assumed set there.
const secretEnv = "BROWSER_USE_WEBHOOK_SECRET"

// ---------------------------------------------------------------------------
// Every config.yaml in deploy/ loads.

func TestConfigFilesLoad(t *testing.T) {
	var found []string
	err := filepath.WalkDir(".", func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() && d.Name() == "config.yaml" {
			found = append(found, p)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(found) == 0 {
		t.Fatal("no config.yaml under deploy/")
	}
	for _, p := range found {
		t.Run(p, func(t *testing.T) {
			cfg := loadConfigFile(t, p, envOnly(secretEnv))
			checkStatePaths(t, p, cfg, func(dir string) error {
				if !filepath.IsAbs(dir) {
					return fmt.Errorf("is relative: it would depend on the working directory; write an absolute path under /var/lib/hookbridge")
				}
				return nil
			})
		})
	}
}

// Every ConfigMap in kubernetes/ whose key ends in .yaml loads, even one
// no workload mounts, with the webhook secret and the env the file's
// hookbridge containers set (e.g. a NATS password); TestKubernetesManifests
// checks each mounted config against its own container's env exactly.
func TestConfigMapConfigsLoad(t *testing.T) {
	for _, file := range manifestFiles(t) {
		objs := readManifests(t, file)
		env := []string{secretEnv}
		for _, o := range objs {
			if o.Spec.Template == nil {
				continue
			}
			for _, c := range slices.Concat(o.Spec.Template.Spec.InitContainers, o.Spec.Template.Spec.Containers) {
				if isHookbridge(c) {
					for _, e := range c.Env {
						env = append(env, e.Name)
					}
				}
			}
		}
		for _, obj := range objs {
			if obj.Kind != "ConfigMap" {
				continue
			}
			for key, data := range obj.Data {
				if !strings.HasSuffix(key, ".yaml") {
					continue
				}
				name := fmt.Sprintf("%s: ConfigMap %s key %s", file, obj.Metadata.Name, key)
				if _, err := bridge.ParseConfig(name, []byte(data), envOnly(env...)); err != nil {
					t.Errorf("%v", err)
				}
			}
		}
	}
}

// ---------------------------------------------------------------------------
// Kubernetes manifests.

type manifest struct {
	APIVersion string            `yaml:"apiVersion"`
	Kind       string            `yaml:"kind"`
	Metadata   objectMeta        `yaml:"metadata"`
	Type       string            `yaml:"type"`
	Data       map[string]string `yaml:"data"`
	StringData map[string]string `yaml:"stringData"`
	Spec       struct {
		// Deployment, StatefulSet, DaemonSet.
		Template *struct {
			Metadata objectMeta `yaml:"metadata"`
			Spec     podSpec    `yaml:"spec"`
		} `yaml:"template"`
		VolumeClaimTemplates []struct {
			Metadata objectMeta `yaml:"metadata"`
			Spec     struct {
				Resources struct {
					Requests map[string]string `yaml:"requests"`
				} `yaml:"resources"`
			} `yaml:"spec"`
		} `yaml:"volumeClaimTemplates"`
		// A Service's selector is a label map; a workload's and a
		// PodDisruptionBudget's have matchLabels.
		Selector yaml.Node `yaml:"selector"`
		// Service.
		Type  string        `yaml:"type"`
		Ports []servicePort `yaml:"ports"`
		// Deployment, StatefulSet (nil: 1).
		Replicas *int `yaml:"replicas"`
		// HorizontalPodAutoscaler.
		ScaleTargetRef struct {
			Kind string `yaml:"kind"`
			Name string `yaml:"name"`
		} `yaml:"scaleTargetRef"`
		MinReplicas *int `yaml:"minReplicas"` // nil: 1
		MaxReplicas int  `yaml:"maxReplicas"`
		Metrics     []struct {
			Type     string `yaml:"type"`
			Resource *struct {
				Name   string `yaml:"name"`
				Target struct {
					Type string `yaml:"type"`
				} `yaml:"target"`
			} `yaml:"resource"`
		} `yaml:"metrics"`
		// PodDisruptionBudget: an int or a percentage.
		MinAvailable   yaml.Node `yaml:"minAvailable"`
		MaxUnavailable yaml.Node `yaml:"maxUnavailable"`
	} `yaml:"spec"`
}

type labelSelector struct {
	MatchLabels      map[string]string `yaml:"matchLabels"`
	MatchExpressions []yaml.Node       `yaml:"matchExpressions"`
}

type podAffinityTerm struct {
	TopologyKey   string        `yaml:"topologyKey"`
	LabelSelector labelSelector `yaml:"labelSelector"`
}

type objectMeta struct {
	Name        string            `yaml:"name"`
	Labels      map[string]string `yaml:"labels"`
	Annotations map[string]string `yaml:"annotations"`
}

type servicePort struct {
	Name       string    `yaml:"name"`
	Port       int       `yaml:"port"`
	TargetPort yaml.Node `yaml:"targetPort"`
}

type podSpec struct {
	TerminationGracePeriodSeconds *int64           `yaml:"terminationGracePeriodSeconds"`
	SecurityContext               *securityContext `yaml:"securityContext"`
	InitContainers                []container      `yaml:"initContainers"`
	Containers                    []container      `yaml:"containers"`
	Volumes                       []volume         `yaml:"volumes"`
	TopologySpreadConstraints     []struct {
		TopologyKey       string        `yaml:"topologyKey"`
		WhenUnsatisfiable string        `yaml:"whenUnsatisfiable"`
		LabelSelector     labelSelector `yaml:"labelSelector"`
	} `yaml:"topologySpreadConstraints"`
	Affinity *struct {
		PodAntiAffinity *struct {
			Required  []podAffinityTerm `yaml:"requiredDuringSchedulingIgnoredDuringExecution"`
			Preferred []struct {
				PodAffinityTerm podAffinityTerm `yaml:"podAffinityTerm"`
			} `yaml:"preferredDuringSchedulingIgnoredDuringExecution"`
		} `yaml:"podAntiAffinity"`
	} `yaml:"affinity"`
}

type securityContext struct {
	RunAsNonRoot             *bool  `yaml:"runAsNonRoot"`
	RunAsUser                *int64 `yaml:"runAsUser"`
	ReadOnlyRootFilesystem   *bool  `yaml:"readOnlyRootFilesystem"`
	AllowPrivilegeEscalation *bool  `yaml:"allowPrivilegeEscalation"`
	Capabilities             *struct {
		Drop []string `yaml:"drop"`
	} `yaml:"capabilities"`
}

type container struct {
	Name    string   `yaml:"name"`
	Image   string   `yaml:"image"`
	Command []string `yaml:"command"`
	Args    []string `yaml:"args"`
	Env     []struct {
		Name      string `yaml:"name"`
		Value     string `yaml:"value"`
		ValueFrom *struct {
			SecretKeyRef *struct {
				Name string `yaml:"name"`
				Key  string `yaml:"key"`
			} `yaml:"secretKeyRef"`
		} `yaml:"valueFrom"`
	} `yaml:"env"`
	EnvFrom []yaml.Node `yaml:"envFrom"`
	Ports   []struct {
		Name          string `yaml:"name"`
		ContainerPort int    `yaml:"containerPort"`
	} `yaml:"ports"`
	LivenessProbe   *probe           `yaml:"livenessProbe"`
	ReadinessProbe  *probe           `yaml:"readinessProbe"`
	StartupProbe    *probe           `yaml:"startupProbe"`
	VolumeMounts    []volumeMount    `yaml:"volumeMounts"`
	SecurityContext *securityContext `yaml:"securityContext"`
	Resources       struct {
		Requests map[string]string `yaml:"requests"`
		Limits   map[string]string `yaml:"limits"`
	} `yaml:"resources"`
}

type probe struct {
	HTTPGet *struct {
		Path string    `yaml:"path"`
		Port yaml.Node `yaml:"port"`
	} `yaml:"httpGet"`
	TCPSocket *yaml.Node `yaml:"tcpSocket"`
	Exec      *yaml.Node `yaml:"exec"`
}

type volumeMount struct {
	Name      string `yaml:"name"`
	MountPath string `yaml:"mountPath"`
	SubPath   string `yaml:"subPath"`
	ReadOnly  bool   `yaml:"readOnly"`
}

type volume struct {
	Name      string `yaml:"name"`
	ConfigMap *struct {
		Name  string `yaml:"name"`
		Items []struct {
			Key  string `yaml:"key"`
			Path string `yaml:"path"`
		} `yaml:"items"`
	} `yaml:"configMap"`
	EmptyDir *struct {
		SizeLimit string `yaml:"sizeLimit"`
	} `yaml:"emptyDir"`
	PersistentVolumeClaim *yaml.Node `yaml:"persistentVolumeClaim"`
	Secret                *yaml.Node `yaml:"secret"`
}

func manifestFiles(t *testing.T) []string {
	t.Helper()
	var files []string
	for _, pat := range []string{"*.yaml", "*.yml"} {
		m, err := filepath.Glob(filepath.Join(kubernetesDir, pat))
		if err != nil {
			t.Fatal(err)
		}
		files = append(files, m...)
	}
	if len(files) == 0 {
		t.Fatalf("no manifests in deploy/%s", kubernetesDir)
	}
	slices.Sort(files)
	return files
}

func readManifests(t *testing.T, file string) []manifest {
	t.Helper()
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	var objs []manifest
	dec := yaml.NewDecoder(bytes.NewReader(data))
	for i := 0; ; i++ {
		var m manifest
		err := dec.Decode(&m)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("%s: document %d: %v", file, i+1, err)
		}
		if m.Kind == "" {
			continue // an empty document (a trailing ---)
		}
		if m.APIVersion == "" || m.Metadata.Name == "" {
			t.Errorf("%s: document %d (%s): apiVersion and metadata.name are required", file, i+1, m.Kind)
		}
		objs = append(objs, m)
	}
	return objs
}

// workload is one pod template with hookbridge in it, and what it needs.
type workload struct {
	file, name string
	kind       string
	obj        manifest
	pod        podSpec
	hb         container
	claims     map[string]string // volumeClaimTemplates name -> storage request
	configMaps map[string]manifest
	secrets    map[string]manifest
	services   []manifest
	objs       []manifest // every object in the file
}

func (w workload) String() string { return fmt.Sprintf("%s: %s %s", w.file, w.kind, w.name) }

// isHookbridge tells the hookbridge container from the app's.
func isHookbridge(c container) bool {
	return c.Name == "hookbridge" || strings.Contains(c.Image, "/hookbridge")
}

func workloads(t *testing.T) []workload {
	t.Helper()
	var ws []workload
	for _, file := range manifestFiles(t) {
		objs := readManifests(t, file)
		cms, secrets := map[string]manifest{}, map[string]manifest{}
		var services []manifest
		for _, o := range objs {
			switch o.Kind {
			case "ConfigMap":
				cms[o.Metadata.Name] = o
			case "Secret":
				secrets[o.Metadata.Name] = o
			case "Service":
				services = append(services, o)
			}
		}
		n := 0
		for _, o := range objs {
			if o.Spec.Template == nil {
				continue
			}
			pod := o.Spec.Template.Spec
			for _, c := range slices.Concat(pod.InitContainers, pod.Containers) {
				if !isHookbridge(c) {
					continue
				}
				claims := map[string]string{}
				for _, vct := range o.Spec.VolumeClaimTemplates {
					claims[vct.Metadata.Name] = vct.Spec.Resources.Requests["storage"]
				}
				ws = append(ws, workload{
					file: file, name: o.Metadata.Name, kind: o.Kind, obj: o, pod: pod, hb: c,
					claims: claims, configMaps: cms, secrets: secrets, services: services, objs: objs,
				})
				n++
			}
		}
		if n == 0 {
			t.Errorf("%s: no workload runs a hookbridge container (named hookbridge or with a .../hookbridge image)", file)
		}
	}
	return ws
}

// serveFlags mirrors the flags of `hookbridge serve` (cmd/hookbridge/serve.go),
// so a misspelled or unknown flag in a manifest fails here instead of in a
// crash-looping pod. Update it when serve gains a flag.
func parseServeArgs(args []string) (config string, err error) {
	if len(args) == 0 || args[0] != "serve" {
		return "", fmt.Errorf("args %q: start with \"serve\" (the image's ENTRYPOINT is the hookbridge binary)", args)
	}
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	cfg := fs.String("config", "config.yaml", "")
	level := fs.String("log-level", "info", "")
	format := fs.String("log-format", "text", "")
	fs.Bool("skip-probe", false, "")
	fs.Duration("watch", 2*time.Second, "")
	if err := fs.Parse(args[1:]); err != nil {
		return "", fmt.Errorf("args %q: %v (flags of hookbridge serve: -config, -log-level, -log-format, -skip-probe, -watch)", args, err)
	}
	if fs.NArg() > 0 {
		return "", fmt.Errorf("args %q: serve takes no arguments after its flags, found %q", args, fs.Args())
	}
	if !slices.Contains([]string{"debug", "info", "warn", "error"}, *level) {
		return "", fmt.Errorf("args: -log-level %q: use debug, info, warn or error", *level)
	}
	if *format != "text" && *format != "json" {
		return "", fmt.Errorf("args: -log-format %q: use text or json", *format)
	}
	return *cfg, nil
}

// load finds the config file the container's -config names, in the
// ConfigMap mounted there, and loads it with exactly the container's env.
func (w workload) load(t *testing.T) (*bridge.Config, string) {
	t.Helper()
	cfg, cfgPath, asked, err := w.loadConfig()
	if err != nil {
		t.Fatal(err)
	}
	// A secret handed to the container that the config never reads is a
	// typo on one side or the other.
	for _, e := range w.hb.Env {
		if e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil && !asked[e.Name] {
			t.Errorf("%v: container %s gets %s from Secret %s, but the config never reads ${%s}: fix the env name or the config's secrets", w, w.hb.Name, e.Name, e.ValueFrom.SecretKeyRef.Name, e.Name)
		}
	}
	return cfg, cfgPath
}

// loadConfig is load's work; asked holds the env names the config read.
func (w workload) loadConfig() (cfg *bridge.Config, cfgPath string, asked map[string]bool, err error) {
	if len(w.hb.Command) > 0 {
		return nil, "", nil, fmt.Errorf("%v: container %s sets command %q: leave it out, the image's ENTRYPOINT is %s and args start with serve", w, w.hb.Name, w.hb.Command, hookbridgeBinary)
	}
	cfgPath, err = parseServeArgs(w.hb.Args)
	if err != nil {
		return nil, "", nil, fmt.Errorf("%v: container %s: %v", w, w.hb.Name, err)
	}
	if !path.IsAbs(cfgPath) {
		return nil, "", nil, fmt.Errorf("%v: container %s: -config %q: give the absolute path of the ConfigMap's mount, e.g. /etc/hookbridge/config.yaml", w, w.hb.Name, cfgPath)
	}
	var vol *volume
	var key string
	for _, m := range w.hb.VolumeMounts {
		v := w.volume(m.Name)
		if v == nil || v.ConfigMap == nil {
			continue
		}
		rel, ok := strings.CutPrefix(cfgPath, strings.TrimSuffix(m.MountPath, "/")+"/")
		if m.SubPath != "" {
			if m.MountPath == cfgPath {
				vol, key = v, m.SubPath
			}
			continue
		}
		if ok {
			vol, key = v, rel
			for _, it := range v.ConfigMap.Items {
				if it.Path == rel {
					key = it.Key
				}
			}
		}
	}
	if vol == nil {
		return nil, "", nil, fmt.Errorf("%v: container %s: -config %s is not in a mounted ConfigMap: mount the ConfigMap holding config.yaml at %s", w, w.hb.Name, cfgPath, path.Dir(cfgPath))
	}
	cm, ok := w.configMaps[vol.ConfigMap.Name]
	if !ok {
		return nil, "", nil, fmt.Errorf("%v: volume %s names ConfigMap %q, which is not in %s: add it or fix the name", w, vol.Name, vol.ConfigMap.Name, w.file)
	}
	data, ok := cm.Data[key]
	if !ok {
		return nil, "", nil, fmt.Errorf("%v: -config %s reads key %q of ConfigMap %s, which has keys %v: rename the key or fix -config", w, cfgPath, key, cm.Metadata.Name, slices.Sorted(maps.Keys(cm.Data)))
	}
	if len(w.hb.EnvFrom) > 0 {
		return nil, "", nil, fmt.Errorf("%v: container %s uses envFrom: list each variable under env so this test knows which ${VAR} are set", w, w.hb.Name)
	}
	set := map[string]bool{}
	for _, e := range w.hb.Env {
		set[e.Name] = true
	}
	asked = map[string]bool{}
	lookup := func(name string) (string, bool) {
		asked[name] = true
		if set[name] {
			return "value-of-" + name, true
		}
		return "", false
	}
	name := fmt.Sprintf("%s (ConfigMap %s, key %s)", w.file, cm.Metadata.Name, key)
	cfg, err = bridge.ParseConfig(name, []byte(data), lookup)
	if err != nil {
		return nil, "", nil, fmt.Errorf("%v\n(the hookbridge container sets env %v: a ${VAR} the config reads must be one of them)", err, slices.Sorted(maps.Keys(set)))
	}
	return cfg, cfgPath, asked, nil
}

func (w workload) volume(name string) *volume {
	for i := range w.pod.Volumes {
		if w.pod.Volumes[i].Name == name {
			return &w.pod.Volumes[i]
		}
	}
	return nil
}

// writable reports whether a volume of the pod can hold the spool, and its
// size limit ("" when none is known).
func (w workload) writable(name string) (ok bool, size string) {
	if v := w.volume(name); v != nil {
		switch {
		case v.EmptyDir != nil:
			return true, v.EmptyDir.SizeLimit
		case v.PersistentVolumeClaim != nil:
			return true, ""
		}
		return false, ""
	}
	if size, ok := w.claims[name]; ok {
		return true, size
	}
	return false, ""
}

// containerPort resolves a probe's or Service's port (a name or a number)
// among the pod's container ports.
func (w workload) containerPort(n *yaml.Node, only *container) (int, error) {
	if n == nil || n.Kind == 0 {
		return 0, errors.New("no port")
	}
	cs := slices.Concat(w.pod.InitContainers, w.pod.Containers)
	if only != nil {
		cs = []container{*only}
	}
	if num, err := strconv.Atoi(n.Value); err == nil {
		for _, c := range cs {
			for _, p := range c.Ports {
				if p.ContainerPort == num {
					return num, nil
				}
			}
		}
		return num, fmt.Errorf("port %d is not a containerPort", num)
	}
	for _, c := range cs {
		for _, p := range c.Ports {
			if p.Name == n.Value {
				return p.ContainerPort, nil
			}
		}
	}
	return 0, fmt.Errorf("port name %q is not the name of a containerPort", n.Value)
}

func TestKubernetesManifests(t *testing.T) {
	for _, w := range workloads(t) {
		t.Run(w.file+"/"+w.name, func(t *testing.T) {
			cfg, cfgPath := w.load(t)
			listenPort := port(t, w, "server.listen", cfg.Server.Listen)
			adminPort := port(t, w, "server.admin_listen", cfg.Server.AdminListen)

			// Reachable: the kubelet and Services use the pod IP.
			for _, l := range []struct{ key, addr string }{
				{"server.listen", cfg.Server.Listen}, {"server.admin_listen", cfg.Server.AdminListen},
			} {
				if isLoopback(l.addr) {
					t.Errorf("%v: %s %q is loopback: nothing outside the pod reaches it (the kubelet's probes, the Service); write \"0.0.0.0:%s\"", w, l.key, l.addr, portOf(l.addr))
				}
			}

			// Ports.
			hbPorts := map[int]string{}
			for _, p := range w.hb.Ports {
				hbPorts[p.ContainerPort] = p.Name
			}
			if _, ok := hbPorts[listenPort]; !ok {
				t.Errorf("%v: container %s has no containerPort %d, the port of server.listen %q: add it (name: webhook)", w, w.hb.Name, listenPort, cfg.Server.Listen)
			}
			if _, ok := hbPorts[adminPort]; !ok {
				t.Errorf("%v: container %s has no containerPort %d, the port of server.admin_listen %q: add it (name: admin)", w, w.hb.Name, adminPort, cfg.Server.AdminListen)
			}

			// Probes: liveness and startup must not depend on the brokers
			// (/healthz), readiness does (/readyz).
			probes := []struct {
				kind string
				p    *probe
				want string
			}{
				{"livenessProbe", w.hb.LivenessProbe, bridge.HealthzPath},
				{"startupProbe", w.hb.StartupProbe, bridge.HealthzPath},
				{"readinessProbe", w.hb.ReadinessProbe, bridge.ReadyzPath},
			}
			for _, pr := range probes {
				if pr.p == nil {
					if pr.kind != "startupProbe" {
						t.Errorf("%v: container %s has no %s: add httpGet %s on port admin", w, w.hb.Name, pr.kind, pr.want)
					}
					continue
				}
				if pr.p.HTTPGet == nil {
					t.Errorf("%v: container %s: %s is not httpGet: use httpGet %s on port admin (%d)", w, w.hb.Name, pr.kind, pr.want, adminPort)
					continue
				}
				if p := pr.p.HTTPGet.Path; p != pr.want {
					served := []string{bridge.HealthzPath, bridge.ReadyzPath}
					if slices.Contains(served, p) {
						t.Errorf("%v: container %s: %s path %s: use %s (liveness and startup on %s, which does not depend on the brokers; readiness on %s)", w, w.hb.Name, pr.kind, p, pr.want, bridge.HealthzPath, bridge.ReadyzPath)
					} else {
						t.Errorf("%v: container %s: %s path %q is not served by the admin listener (it serves %v): use %s", w, w.hb.Name, pr.kind, p, served, pr.want)
					}
				}
				got, err := w.containerPort(&pr.p.HTTPGet.Port, &w.hb)
				switch {
				case err != nil:
					t.Errorf("%v: container %s: %s: %v: use port admin", w, w.hb.Name, pr.kind, err)
				case got != adminPort:
					t.Errorf("%v: container %s: %s probes port %d, but the admin listener (server.admin_listen %q) is on %d: use port admin", w, w.hb.Name, pr.kind, got, cfg.Server.AdminListen, adminPort)
				}
			}

			// Services that select this pod.
			podLabels := w.obj.Spec.Template.Metadata.Labels
			webhookServed := false
			for _, svc := range w.services {
				var sel map[string]string
				if err := svc.Spec.Selector.Decode(&sel); err != nil || len(sel) == 0 || !selects(sel, podLabels) {
					continue
				}
				targets := map[int]bool{}
				for _, sp := range svc.Spec.Ports {
					tp := &sp.TargetPort
					if tp.Kind == 0 {
						tp = &yaml.Node{Kind: yaml.ScalarNode, Value: strconv.Itoa(sp.Port)}
					}
					got, err := w.containerPort(tp, nil)
					if err != nil {
						t.Errorf("%s: Service %s port %s: targetPort: %v of %s %s: fix targetPort", w.file, svc.Metadata.Name, sp.Name, err, w.kind, w.name)
						continue
					}
					targets[got] = true
				}
				if targets[listenPort] {
					webhookServed = true
					if targets[adminPort] {
						t.Errorf("%s: Service %s exposes both the webhook port %d and the admin port %d: the admin listener must not face the internet; give metrics their own ClusterIP Service", w.file, svc.Metadata.Name, listenPort, adminPort)
					}
				}
				if targets[adminPort] && (svc.Spec.Type == "LoadBalancer" || svc.Spec.Type == "NodePort") {
					t.Errorf("%s: Service %s of type %s exposes the admin port %d: use ClusterIP", w.file, svc.Metadata.Name, svc.Spec.Type, adminPort)
				}
				checkPrometheus(t, fmt.Sprintf("%s: Service %s", w.file, svc.Metadata.Name), svc.Metadata.Annotations, adminPort)
			}
			if !webhookServed {
				t.Errorf("%v: no Service in %s selects this pod (labels %v) with a port targeting the webhook port %d (server.listen): add one, targetPort: webhook", w, w.file, podLabels, listenPort)
			}
			checkPrometheus(t, fmt.Sprintf("%v: pod template", w), w.obj.Spec.Template.Metadata.Annotations, adminPort)

			// Writable state: the spool and any embedded NATS store.
			checkStatePaths(t, w.String(), cfg, func(dir string) error {
				m, ok := mountOf(w.hb.VolumeMounts, dir)
				if !ok {
					return fmt.Errorf("is on the container's read-only root filesystem: mount a volume (emptyDir or PVC) above it, e.g. at /var/lib/hookbridge")
				}
				wr, size := w.writable(m.Name)
				switch {
				case m.ReadOnly:
					return fmt.Errorf("is under volumeMount %s (%s), which is readOnly: drop readOnly", m.Name, m.MountPath)
				case !wr:
					return fmt.Errorf("is under volume %s, which is not an emptyDir or a PersistentVolumeClaim (ConfigMaps and Secrets are read-only)", m.Name)
				}
				if size != "" && cfg.UsesSpool() && cfg.Spool.Backend == bridge.SpoolLocal && dir == cfg.Spool.Dir {
					n, err := parseQuantity(size)
					if err != nil {
						return fmt.Errorf("volume %s size %q: %v", m.Name, size, err)
					}
					if n <= cfg.Spool.MaxBytes {
						return fmt.Errorf("is on volume %s of %s, no larger than spool.max_bytes (%d): a full spool would fill the volume (an emptyDir over its sizeLimit gets the pod evicted); lower max_bytes or grow the volume", m.Name, size, cfg.Spool.MaxBytes)
					}
				}
				return nil
			})

			// The ConfigMap mount and -config agree (load found it there),
			// and the config must not be writable.
			if m, ok := mountOf(w.hb.VolumeMounts, cfgPath); ok && !m.ReadOnly {
				t.Errorf("%v: volumeMount %s (%s) holds the config: set readOnly: true", w, m.Name, m.MountPath)
			}

			// Secrets the env reads exist, with the key.
			for _, e := range w.hb.Env {
				if e.ValueFrom == nil || e.ValueFrom.SecretKeyRef == nil {
					continue
				}
				ref := e.ValueFrom.SecretKeyRef
				s, ok := w.secrets[ref.Name]
				if !ok {
					t.Errorf("%v: env %s reads Secret %q, which is not in %s: add it or fix secretKeyRef.name", w, e.Name, ref.Name, w.file)
					continue
				}
				_, inString := s.StringData[ref.Key]
				_, inData := s.Data[ref.Key]
				if !inString && !inData {
					t.Errorf("%v: env %s reads key %q of Secret %s, which has %v: fix secretKeyRef.key or the Secret", w, e.Name, ref.Key, ref.Name, slices.Concat(slices.Sorted(maps.Keys(s.StringData)), slices.Sorted(maps.Keys(s.Data))))
				}
			}

			// Files the config reads (NATS creds) are mounted.
			checkMountedFiles(t, w, cfg)

			// Replica count, autoscalers, disruption budgets, spreading.
			minReplicas := checkAutoscalers(t, w)
			pdbs := checkDisruptionBudgets(t, w, minReplicas)
			if cfg.Spool.Backend == bridge.SpoolJetStream {
				checkScaleOut(t, w, cfg, minReplicas, pdbs)
			} else if filepath.Base(w.file) == scaleOutFile {
				t.Errorf("%v: spool.backend is %s: %s is the shared-spool shape, set spool.backend: jetstream (a per-replica spool belongs in standalone.yaml)", w, cfg.Spool.Backend, scaleOutFile)
			}

			// Shutdown: the kubelet's SIGKILL comes after the grace period.
			grace := int64(30) // the Kubernetes default
			if w.pod.TerminationGracePeriodSeconds != nil {
				grace = *w.pod.TerminationGracePeriodSeconds
			}
			if time.Duration(grace)*time.Second <= cfg.Server.ShutdownTimeout {
				t.Errorf("%v: terminationGracePeriodSeconds %d is not longer than server.shutdown_timeout %v: the kubelet would SIGKILL hookbridge mid-shutdown; raise it (e.g. to %d)", w, grace, cfg.Server.ShutdownTimeout, int64(cfg.Server.ShutdownTimeout/time.Second)+15)
			}

			// Security context (the container's overrides the pod's).
			eff := func(get func(*securityContext) *bool) *bool {
				if w.hb.SecurityContext != nil && get(w.hb.SecurityContext) != nil {
					return get(w.hb.SecurityContext)
				}
				if w.pod.SecurityContext != nil {
					return get(w.pod.SecurityContext)
				}
				return nil
			}
			if v := eff(func(s *securityContext) *bool { return s.RunAsNonRoot }); v == nil || !*v {
				t.Errorf("%v: container %s: set securityContext.runAsNonRoot: true (the image runs as 65532)", w, w.hb.Name)
			}
			for _, sc := range []*securityContext{w.pod.SecurityContext, w.hb.SecurityContext} {
				if sc != nil && sc.RunAsUser != nil && *sc.RunAsUser == 0 {
					t.Errorf("%v: securityContext.runAsUser 0 is root: use 65532, the image's user", w)
				}
			}
			sc := w.hb.SecurityContext
			switch {
			case sc == nil:
				t.Errorf("%v: container %s has no securityContext: set readOnlyRootFilesystem: true, allowPrivilegeEscalation: false, capabilities.drop [ALL]", w, w.hb.Name)
			default:
				if sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
					t.Errorf("%v: container %s: set securityContext.readOnlyRootFilesystem: true (hookbridge writes only to its spool volume)", w, w.hb.Name)
				}
				if sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
					t.Errorf("%v: container %s: set securityContext.allowPrivilegeEscalation: false", w, w.hb.Name)
				}
				if sc.Capabilities == nil || !slices.Contains(sc.Capabilities.Drop, "ALL") {
					t.Errorf("%v: container %s: set securityContext.capabilities.drop: [ALL] (hookbridge needs none: its ports are above 1024)", w, w.hb.Name)
				}
			}
		})
	}
}

func checkPrometheus(t *testing.T, where string, ann map[string]string, adminPort int) {
	t.Helper()
	if p, ok := ann["prometheus.io/port"]; ok && p != strconv.Itoa(adminPort) {
		t.Errorf("%s: annotation prometheus.io/port %q: metrics are on the admin port %d", where, p, adminPort)
	}
	if p, ok := ann["prometheus.io/path"]; ok && p != bridge.MetricsPath {
		t.Errorf("%s: annotation prometheus.io/path %q: hookbridge serves metrics at %s", where, p, bridge.MetricsPath)
	}
}

// scaleOutFile is the manifest of the shared (jetstream) spool: its
// workload must keep spool.backend: jetstream.
const scaleOutFile = "scaleout.yaml"

// checkMountedFiles checks that every file the config reads at start (NATS
// creds, TLS certificates, secret files) is under a volumeMount: the image
// has none of them.
func checkMountedFiles(t *testing.T, w workload, cfg *bridge.Config) {
	t.Helper()
	files := map[string]string{}
	if cfg.Spool.Backend == bridge.SpoolJetStream && cfg.Spool.CredsFile != "" {
		files["spool.creds_file"] = cfg.Spool.CredsFile
	}
	for i, sk := range cfg.Sinks {
		if o, ok := sk.Options.(*natssink.Config); ok && o.CredsFile != "" {
			files[fmt.Sprintf("sinks[%d] (%s) creds_file", i, sk.Name)] = o.CredsFile
		}
	}
	files["server.tls.cert_file"], files["server.tls.key_file"] = cfg.Server.TLS.CertFile, cfg.Server.TLS.KeyFile
	for i, src := range cfg.Sources {
		for j, f := range src.SecretFiles {
			files[fmt.Sprintf("sources[%d].secret_files[%d]", i, j)] = f
		}
	}
	for _, key := range slices.Sorted(maps.Keys(files)) {
		f := files[key]
		if f == "" {
			continue
		}
		if !path.IsAbs(f) {
			t.Errorf("%v: %s %q is relative: give the absolute path in the Secret's mount, e.g. /etc/nats/hookbridge.creds", w, key, f)
			continue
		}
		m, ok := mountOf(w.hb.VolumeMounts, f)
		if !ok || w.volume(m.Name) == nil {
			t.Errorf("%v: %s %s is not under a volumeMount of container %s: the image has no such file; mount the Secret holding it at %s", w, key, f, w.hb.Name, path.Dir(f))
		}
	}
}

// checkAutoscalers checks the HorizontalPodAutoscalers targeting w and
// returns the fewest replicas w runs: the autoscaler's minReplicas, or
// spec.replicas without one.
func checkAutoscalers(t *testing.T, w workload) int {
	t.Helper()
	least := 1
	if w.obj.Spec.Replicas != nil {
		least = *w.obj.Spec.Replicas
	}
	for _, o := range w.objs {
		if o.Kind != "HorizontalPodAutoscaler" || o.Spec.ScaleTargetRef.Kind != w.kind || o.Spec.ScaleTargetRef.Name != w.name {
			continue
		}
		where := fmt.Sprintf("%s: HorizontalPodAutoscaler %s", w.file, o.Metadata.Name)
		least = 1
		if o.Spec.MinReplicas != nil {
			least = *o.Spec.MinReplicas
		}
		if o.Spec.MaxReplicas < least {
			t.Errorf("%s: maxReplicas %d is below minReplicas %d", where, o.Spec.MaxReplicas, least)
		}
		if r := w.obj.Spec.Replicas; r != nil && (*r < least || *r > o.Spec.MaxReplicas) {
			t.Errorf("%s: %s %s has replicas %d, outside minReplicas..maxReplicas (%d..%d): every kubectl apply would move it there until the autoscaler moves it back", where, w.kind, w.name, *r, least, o.Spec.MaxReplicas)
		}
		for _, m := range o.Spec.Metrics {
			if m.Type != "Resource" || m.Resource == nil || m.Resource.Target.Type != "Utilization" {
				continue
			}
			// Utilization is a percentage of the request, of every container.
			for _, c := range slices.Concat(w.pod.InitContainers, w.pod.Containers) {
				if c.Resources.Requests[m.Resource.Name] == "" {
					t.Errorf("%s: scales on %s utilization, but container %s requests no %s: the autoscaler cannot compute it; set resources.requests.%s", where, m.Resource.Name, c.Name, m.Resource.Name, m.Resource.Name)
				}
			}
		}
	}
	return least
}

// checkDisruptionBudgets returns the PodDisruptionBudgets of w's file that
// select its pods, and checks each lets a drain evict at least one pod
// when w runs least replicas.
func checkDisruptionBudgets(t *testing.T, w workload, least int) []manifest {
	t.Helper()
	var out []manifest
	for _, o := range w.objs {
		if o.Kind != "PodDisruptionBudget" {
			continue
		}
		var sel labelSelector
		if err := o.Spec.Selector.Decode(&sel); err != nil || len(sel.MatchLabels) == 0 || !selects(sel.MatchLabels, w.obj.Spec.Template.Metadata.Labels) {
			continue
		}
		out = append(out, o)
		where := fmt.Sprintf("%s: PodDisruptionBudget %s (for %s %s)", w.file, o.Metadata.Name, w.kind, w.name)
		minA, maxU := o.Spec.MinAvailable, o.Spec.MaxUnavailable
		if (minA.Kind == 0) == (maxU.Kind == 0) {
			t.Errorf("%s: give exactly one of minAvailable and maxUnavailable (maxUnavailable: 1)", where)
			continue
		}
		if maxU.Kind != 0 && (maxU.Value == "0" || maxU.Value == "0%") {
			t.Errorf("%s: maxUnavailable %s blocks every node drain: use 1", where, maxU.Value)
		}
		if minA.Kind != 0 {
			n, err := strconv.Atoi(minA.Value)
			if minA.Value == "100%" || err == nil && n >= least {
				t.Errorf("%s: minAvailable %s with as few as %d replicas blocks every node drain: use maxUnavailable: 1", where, minA.Value, least)
			}
		}
	}
	return out
}

// checkScaleOut checks a workload on the shared jetstream spool: its
// replicas hold no state, so it must run as several interchangeable pods
// spread over nodes, and the stream must outlive a NATS node.
func checkScaleOut(t *testing.T, w workload, cfg *bridge.Config, least int, pdbs []manifest) {
	t.Helper()
	sp := cfg.Spool
	if w.kind != "Deployment" {
		t.Errorf("%v: with spool.backend: jetstream the replicas hold no state: run them as a Deployment", w)
	}
	if len(w.obj.Spec.VolumeClaimTemplates) > 0 {
		t.Errorf("%v: has volumeClaimTemplates, but the jetstream spool is in NATS: remove them (and spool.dir does not apply)", w)
	}
	for _, v := range w.pod.Volumes {
		if v.PersistentVolumeClaim != nil {
			t.Errorf("%v: volume %s is a PersistentVolumeClaim, but the jetstream spool is in NATS: replicas must share nothing but NATS; remove it", w, v.Name)
		}
	}
	if least < 2 {
		t.Errorf("%v: runs as few as %d replica: the shared spool is for several (one going down hands its messages to the others); set replicas (and an autoscaler's minReplicas) to 2 or more", w, least)
	}
	if len(pdbs) == 0 {
		t.Errorf("%v: no PodDisruptionBudget in %s selects its pods: add one with maxUnavailable: 1, so a node drain never takes every replica", w, w.file)
	}
	podLabels := w.obj.Spec.Template.Metadata.Labels
	spread := false
	for _, c := range w.pod.TopologySpreadConstraints {
		spread = spread || c.TopologyKey == "kubernetes.io/hostname" && selects(c.LabelSelector.MatchLabels, podLabels) && len(c.LabelSelector.MatchLabels) > 0
	}
	if a := w.pod.Affinity; a != nil && a.PodAntiAffinity != nil {
		terms := a.PodAntiAffinity.Required
		for _, p := range a.PodAntiAffinity.Preferred {
			terms = append(terms, p.PodAffinityTerm)
		}
		for _, term := range terms {
			spread = spread || term.TopologyKey == "kubernetes.io/hostname" && selects(term.LabelSelector.MatchLabels, podLabels) && len(term.LabelSelector.MatchLabels) > 0
		}
	}
	if !spread {
		t.Errorf("%v: nothing spreads its replicas over nodes: add a topologySpreadConstraint (or podAntiAffinity) on kubernetes.io/hostname selecting %v, so one node's loss takes one replica", w, podLabels)
	}
	if cfg.Server.ReplayCache != bridge.ReplayNATS {
		t.Errorf("%v: server.replay_cache is %s: set it to nats, or a Browser Use retry landing on another replica (after spool.duplicates) is delivered again", w, cfg.Server.ReplayCache)
	}
	if sp.Replicas < 3 {
		t.Errorf("%v: spool.replicas %d: the stream holds every accepted event not yet delivered; keep 3 copies so losing a NATS node loses none", w, sp.Replicas)
	}
	if h := loopbackURL(sp.URL); h != "" {
		t.Errorf("%v: spool.url names %s, the pod itself: every replica must reach the same NATS cluster; write its Service or pods", w, h)
	}
	for i, sk := range cfg.Sinks {
		o, ok := sk.Options.(*natssink.Config)
		if !ok {
			continue
		}
		switch {
		case o.URL == natssink.Embedded:
			t.Errorf("%v: sinks[%d] (%s) is embedded NATS: each replica would run its own, and the events would scatter over them; point it at the shared cluster", w, i, sk.Name)
		case loopbackURL(o.URL) != "":
			t.Errorf("%v: sinks[%d] (%s) url names %s, the pod itself: point it at the shared NATS cluster", w, i, sk.Name, loopbackURL(o.URL))
		case o.JetStream && o.Stream.Create != nil && *o.Stream.Create && o.Stream.Replicas < sp.Replicas:
			t.Errorf("%v: sinks[%d] (%s) would create its stream %s with stream.replicas %d, fewer than spool.replicas %d: an event leaving the spool would lose its durability; set stream.replicas: %d", w, i, sk.Name, o.Stream.Name, o.Stream.Replicas, sp.Replicas, sp.Replicas)
		}
	}
}

// loopbackURL returns the first loopback host among comma-separated URLs,
// "" when none is.
func loopbackURL(urls string) string {
	for _, raw := range strings.Split(urls, ",") {
		u, err := url.Parse(strings.TrimSpace(raw))
		if err != nil {
			continue
		}
		h := u.Hostname()
		if ip := net.ParseIP(h); h == "localhost" || ip != nil && ip.IsLoopback() {
			return u.Host
		}
	}
	return ""
}

// Every HorizontalPodAutoscaler scales a hookbridge workload of its file.
func TestAutoscalersTargetAWorkload(t *testing.T) {
	ws := workloads(t)
	for _, file := range manifestFiles(t) {
		for _, o := range readManifests(t, file) {
			if o.Kind != "HorizontalPodAutoscaler" {
				continue
			}
			ref := o.Spec.ScaleTargetRef
			if !slices.ContainsFunc(ws, func(w workload) bool { return w.file == file && w.kind == ref.Kind && w.name == ref.Name }) {
				t.Errorf("%s: HorizontalPodAutoscaler %s scales %s %s, which is not a hookbridge workload in the file: fix scaleTargetRef", file, o.Metadata.Name, ref.Kind, ref.Name)
			}
		}
	}
}

func selects(sel, labels map[string]string) bool {
	for k, v := range sel {
		if labels[k] != v {
			return false
		}
	}
	return true
}

// mountOf returns the deepest volumeMount containing dir.
func mountOf(mounts []volumeMount, dir string) (volumeMount, bool) {
	var best volumeMount
	found := false
	for _, m := range mounts {
		if within(dir, m.MountPath) && (!found || len(m.MountPath) > len(best.MountPath)) {
			best, found = m, true
		}
	}
	return best, found
}

// within reports whether p is root or below it (both absolute, slash-separated).
func within(p, root string) bool {
	p, root = path.Clean(p), path.Clean(root)
	return p == root || strings.HasPrefix(p, strings.TrimSuffix(root, "/")+"/")
}

// checkStatePaths runs check on every directory hookbridge writes: the
// local spool (with delivery: spool; the jetstream spool lives in NATS and
// never opens spool.dir) and each embedded NATS store.
func checkStatePaths(t *testing.T, where string, cfg *bridge.Config, check func(dir string) error) {
	t.Helper()
	if cfg.UsesSpool() && cfg.Spool.Backend == bridge.SpoolLocal {
		if err := check(cfg.Spool.Dir); err != nil {
			t.Errorf("%s: spool.dir %s %v", where, cfg.Spool.Dir, err)
		}
	}
	for i, sk := range cfg.Sinks {
		if o, ok := sk.Options.(*natssink.Config); ok && o.URL == natssink.Embedded {
			if err := check(o.Embedded.StoreDir); err != nil {
				t.Errorf("%s: sinks[%d] (%s) embedded.store_dir %s %v", where, i, sk.Name, o.Embedded.StoreDir, err)
			}
		}
	}
}

func port(t *testing.T, where fmt.Stringer, key, addr string) int {
	t.Helper()
	n, err := strconv.Atoi(portOf(addr))
	if err != nil || n <= 0 {
		t.Fatalf("%v: %s %q: give a fixed port (the manifests must name it)", where, key, addr)
	}
	return n
}

func portOf(addr string) string {
	_, p, _ := net.SplitHostPort(addr)
	return p
}

func isLoopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// parseQuantity reads a Kubernetes quantity of bytes (512Mi, 2Gi, 1G, 1000).
func parseQuantity(s string) (int64, error) {
	units := []struct {
		suffix string
		mult   int64
	}{
		{"Ki", 1 << 10}, {"Mi", 1 << 20}, {"Gi", 1 << 30}, {"Ti", 1 << 40},
		{"k", 1e3}, {"M", 1e6}, {"G", 1e9}, {"T", 1e12},
	}
	for _, u := range units {
		if num, ok := strings.CutSuffix(s, u.suffix); ok {
			n, err := strconv.ParseInt(num, 10, 64)
			return n * u.mult, err
		}
	}
	return strconv.ParseInt(s, 10, 64)
}

// ---------------------------------------------------------------------------
// systemd.

// unitFile is a parsed unit: section -> key -> values in order.
type unitFile map[string]map[string][]string

func parseUnit(t *testing.T, file string) unitFile {
	t.Helper()
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	u := unitFile{}
	section := ""
	sc := bufio.NewScanner(f)
	var cont string
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if cont != "" {
			line, cont = cont+" "+line, ""
		}
		if line == "" || line[0] == '#' || line[0] == ';' {
			continue
		}
		if rest, ok := strings.CutSuffix(line, `\`); ok {
			cont = strings.TrimSpace(rest)
			continue
		}
		if strings.HasPrefix(line, "[") && strings.HasSuffix(line, "]") {
			section = line[1 : len(line)-1]
			if u[section] == nil {
				u[section] = map[string][]string{}
			}
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok || section == "" {
			t.Fatalf("%s:%d: %q is not key=value in a [section]", file, n, line)
		}
		k, v = strings.TrimSpace(k), strings.TrimSpace(v)
		u[section][k] = append(u[section][k], v)
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return u
}

func (u unitFile) last(section, key string) (string, bool) {
	vs := u[section][key]
	if len(vs) == 0 {
		return "", false
	}
	return vs[len(vs)-1], true
}

// parseTimespan reads a systemd time span: "30", "30s", "1min 30s", "2m".
func parseTimespan(s string) (time.Duration, error) {
	if s == "infinity" {
		return time.Duration(1<<63 - 1), nil
	}
	units := map[string]time.Duration{
		"": time.Second, "s": time.Second, "sec": time.Second, "second": time.Second, "seconds": time.Second,
		"ms": time.Millisecond, "msec": time.Millisecond,
		"m": time.Minute, "min": time.Minute, "minute": time.Minute, "minutes": time.Minute,
		"h": time.Hour, "hr": time.Hour, "hour": time.Hour, "hours": time.Hour,
	}
	re := regexp.MustCompile(`^(\d+)\s*([a-z]*)`)
	var total time.Duration
	rest := strings.TrimSpace(s)
	if rest == "" {
		return 0, errors.New("empty")
	}
	for rest != "" {
		m := re.FindStringSubmatch(rest)
		if m == nil {
			return 0, fmt.Errorf("%q is not a time span", s)
		}
		unit, ok := units[m[2]]
		if !ok {
			return 0, fmt.Errorf("%q: unknown unit %q", s, m[2])
		}
		n, _ := strconv.Atoi(m[1])
		total += time.Duration(n) * unit
		rest = strings.TrimSpace(rest[len(m[0]):])
	}
	return total, nil
}

// execArgs splits an Exec*= line, dropping systemd's prefixes (-@:+!).
func execArgs(v string) []string {
	f := strings.Fields(v)
	if len(f) > 0 {
		f[0] = strings.TrimLeft(f[0], "-@:+!")
	}
	return f
}

var notifyHUP = regexp.MustCompile(`signal\.Notify\([^)]*SIGHUP`)

// binaryHandlesSIGHUP reports whether cmd/hookbridge asks for SIGHUP; Go's
// default for an unhandled SIGHUP is to exit at once.
func binaryHandlesSIGHUP(t *testing.T) bool {
	t.Helper()
	files, err := filepath.Glob(filepath.Join("..", "cmd", "hookbridge", "*.go"))
	if err != nil || len(files) == 0 {
		t.Fatalf("cannot read ../cmd/hookbridge: %v", err)
	}
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if notifyHUP.Match(b) {
			return true
		}
	}
	return false
}

func TestSystemdUnit(t *testing.T) {
	u := parseUnit(t, systemdUnit)
	svc := u["Service"]
	if svc == nil {
		t.Fatalf("%s: no [Service] section", systemdUnit)
	}
	get := func(k string) string { v, _ := u.last("Service", k); return v }

	// Who it runs as.
	if get("DynamicUser") != "yes" && get("DynamicUser") != "true" {
		if user := get("User"); user == "" || user == "root" || user == "0" {
			t.Errorf("%s: runs as root: set DynamicUser=yes (or User=hookbridge)", systemdUnit)
		}
	}
	for k, want := range map[string]string{"NoNewPrivileges": "yes", "ProtectSystem": "strict", "ProtectHome": "yes", "PrivateTmp": "yes"} {
		if got := get(k); got != want {
			t.Errorf("%s: %s=%q: set %s=%s", systemdUnit, k, got, k, want)
		}
	}
	for _, f := range svc["SystemCallFilter"] {
		if strings.HasPrefix(f, "~") && (strings.Contains(f, "@resources") || strings.Contains(f, "setrlimit")) {
			t.Errorf("%s: SystemCallFilter=%s denies setrlimit, which the Go runtime calls at start (RLIMIT_NOFILE): drop @resources", systemdUnit, f)
		}
	}

	// ExecStart and the config it reads.
	starts := svc["ExecStart"]
	if len(starts) != 1 {
		t.Fatalf("%s: want exactly one ExecStart, found %d", systemdUnit, len(starts))
	}
	args := execArgs(starts[0])
	if args[0] != hookbridgeBinary {
		t.Errorf("%s: ExecStart runs %s: install the binary at %s (or fix the tests' hookbridgeBinary)", systemdUnit, args[0], hookbridgeBinary)
	}
	cfgPath, err := parseServeArgs(args[1:])
	if err != nil {
		t.Fatalf("%s: ExecStart: %v", systemdUnit, err)
	}
	confDirs := strings.Fields(get("ConfigurationDirectory"))
	inConf := false
	for _, d := range confDirs {
		inConf = inConf || within(cfgPath, "/etc/"+d)
	}
	if !inConf {
		t.Errorf("%s: ExecStart -config %s is not under ConfigurationDirectory (/etc/%v): set ConfigurationDirectory=hookbridge and -config /etc/hookbridge/config.yaml", systemdUnit, cfgPath, confDirs)
	}
	for _, pre := range svc["ExecStartPre"] {
		a := execArgs(pre)
		if a[0] == hookbridgeBinary && len(a) > 1 && a[1] == "check" {
			if i := slices.Index(a, "-config"); i < 0 || i+1 >= len(a) || a[i+1] != cfgPath {
				t.Errorf("%s: ExecStartPre %q checks another config than ExecStart's %s", systemdUnit, pre, cfgPath)
			}
		}
	}
	local := filepath.Join(filepath.Dir(systemdUnit), path.Base(cfgPath))
	if ef := get("EnvironmentFile"); strings.TrimPrefix(ef, "-") == "" {
		t.Errorf("%s: no EnvironmentFile: the webhook secret (%s) must come from a root-only file such as /etc/hookbridge/env", systemdUnit, secretEnv)
	}
	env := map[string]bool{secretEnv: true} // what EnvironmentFile= provides, see README.md
	for _, e := range svc["Environment"] {
		for _, kv := range strings.Fields(e) {
			k, _, _ := strings.Cut(strings.Trim(kv, `"`), "=")
			env[k] = true
		}
	}
	cfg := loadConfigFile(t, local, func(name string) (string, bool) {
		if env[name] {
			return "value-of-" + name, true
		}
		return "", false
	})

	// Writable state: ProtectSystem=strict leaves only these writable.
	var writable []string
	for k, base := range map[string]string{"StateDirectory": "/var/lib/", "CacheDirectory": "/var/cache/", "LogsDirectory": "/var/log/", "RuntimeDirectory": "/run/"} {
		for _, d := range strings.Fields(get(k)) {
			writable = append(writable, base+d)
		}
	}
	for _, rw := range svc["ReadWritePaths"] {
		writable = append(writable, strings.Fields(rw)...)
	}
	wd := get("WorkingDirectory")
	checkStatePaths(t, local+" (for "+systemdUnit+")", cfg, func(dir string) error {
		if !path.IsAbs(dir) {
			if wd == "" {
				return fmt.Errorf("is relative and the unit sets no WorkingDirectory: write /var/lib/hookbridge/...")
			}
			dir = path.Join(wd, dir)
		}
		for _, w := range writable {
			if within(dir, w) {
				return nil
			}
		}
		return fmt.Errorf("is outside the unit's writable paths %v (ProtectSystem=strict): put it under /var/lib/<StateDirectory>", writable)
	})

	// Stopping: SIGTERM or SIGINT start the graceful shutdown.
	if ks := get("KillSignal"); ks != "" && ks != "SIGTERM" && ks != "SIGINT" && ks != "TERM" && ks != "INT" {
		t.Errorf("%s: KillSignal=%s: hookbridge shuts down gracefully on SIGTERM or SIGINT only", systemdUnit, ks)
	}
	stop := get("TimeoutStopSec")
	if stop == "" {
		stop = get("TimeoutSec")
	}
	if stop == "" {
		t.Errorf("%s: set TimeoutStopSec longer than server.shutdown_timeout (%v)", systemdUnit, cfg.Server.ShutdownTimeout)
	} else if d, err := parseTimespan(stop); err != nil {
		t.Errorf("%s: TimeoutStopSec: %v", systemdUnit, err)
	} else if d <= cfg.Server.ShutdownTimeout {
		t.Errorf("%s: TimeoutStopSec=%s is not longer than server.shutdown_timeout %v in %s: systemd would SIGKILL hookbridge mid-shutdown", systemdUnit, stop, cfg.Server.ShutdownTimeout, local)
	}
	if r := get("Restart"); r != "on-failure" && r != "always" && r != "on-abnormal" {
		t.Errorf("%s: Restart=%q: set Restart=on-failure", systemdUnit, r)
	}

	// Reload: only what the binary does.
	hup := binaryHandlesSIGHUP(t)
	reload, hasReload := u.last("Service", "ExecReload")
	switch {
	case hasReload && !regexp.MustCompile(`kill\s+(-s\s*)?-?(SIG)?HUP\s+\$MAINPID`).MatchString(reload):
		t.Errorf("%s: ExecReload=%s: use /bin/kill -HUP $MAINPID (hookbridge reloads on SIGHUP)", systemdUnit, reload)
	case hasReload && !hup:
		t.Errorf("%s: ExecReload sends SIGHUP, but cmd/hookbridge does not handle it: Go exits at once on an unhandled SIGHUP, and systemd counts that as clean (no restart); remove ExecReload until serve reloads on SIGHUP", systemdUnit)
	case !hasReload && hup:
		t.Errorf("%s: cmd/hookbridge now handles SIGHUP: enable ExecReload=/bin/kill -HUP $MAINPID (and update the comment above it)", systemdUnit)
	case !hasReload:
		t.Logf("%s: no ExecReload, as hookbridge does not reload on SIGHUP yet", systemdUnit)
	}
}

// ---------------------------------------------------------------------------
// Dockerfile.

type instruction struct {
	line int
	cmd  string // upper case
	args string
}

func parseDockerfile(t *testing.T, file string) [][]instruction {
	t.Helper()
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	var stages [][]instruction
	var cur *instruction
	for n, raw := range strings.Split(string(data), "\n") {
		line := strings.TrimSpace(raw)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if cur == nil {
			cmd, args, _ := strings.Cut(line, " ")
			cur = &instruction{line: n + 1, cmd: strings.ToUpper(cmd)}
			line = args
		}
		more := strings.HasSuffix(line, `\`)
		cur.args = strings.TrimSpace(cur.args + " " + strings.TrimSuffix(line, `\`))
		if more {
			continue
		}
		if cur.cmd == "FROM" {
			stages = append(stages, nil)
		}
		if len(stages) == 0 {
			t.Fatalf("%s:%d: %s before the first FROM", file, cur.line, cur.cmd)
		}
		stages[len(stages)-1] = append(stages[len(stages)-1], *cur)
		cur = nil
	}
	if len(stages) < 2 {
		t.Fatalf("%s: want a multi-stage build (a Go build stage, then a minimal runtime stage)", file)
	}
	return stages
}

// jsonArgs reads an exec-form instruction (["a", "b"]).
func jsonArgs(t *testing.T, in instruction) []string {
	t.Helper()
	var a []string
	if err := json.Unmarshal([]byte(in.args), &a); err != nil {
		t.Fatalf("%s:%d: %s %s: use the exec (JSON array) form, so signals reach hookbridge directly", dockerfile, in.line, in.cmd, in.args)
	}
	return a
}

func TestDockerfile(t *testing.T) {
	stages := parseDockerfile(t, dockerfile)
	final := stages[len(stages)-1]
	base := strings.Fields(final[0].args)[0]
	if base != "scratch" && !strings.HasPrefix(base, "gcr.io/distroless/") {
		t.Errorf("%s:%d: the final stage is FROM %s: use gcr.io/distroless/static-debian12:nonroot (or scratch)", dockerfile, final[0].line, base)
	}
	byCmd := func(cmd string) []instruction {
		var out []instruction
		for _, in := range final {
			if in.cmd == cmd {
				out = append(out, in)
			}
		}
		return out
	}

	// The build is static (distroless/static has no libc).
	static := false
	for _, st := range stages[:len(stages)-1] {
		for _, in := range st {
			if in.cmd == "RUN" && strings.Contains(in.args, "go build") && strings.Contains(in.args, "CGO_ENABLED=0") {
				static = true
			}
		}
	}
	if !static {
		t.Errorf("%s: no RUN CGO_ENABLED=0 go build: a cgo binary does not run on distroless/static", dockerfile)
	}

	// USER: non-root, numeric so runAsNonRoot can verify it.
	users := byCmd("USER")
	if len(users) == 0 {
		t.Errorf("%s: the final stage sets no USER: add USER 65532:65532", dockerfile)
	} else {
		u := users[len(users)-1]
		uid, _, _ := strings.Cut(u.args, ":")
		if n, err := strconv.Atoi(uid); err != nil || n == 0 {
			t.Errorf("%s:%d: USER %s: use a numeric non-root uid (65532:65532), which Kubernetes' runAsNonRoot can check", dockerfile, u.line, u.args)
		}
	}

	// ENTRYPOINT is the binary the final stage copies in.
	eps := byCmd("ENTRYPOINT")
	if len(eps) == 0 {
		t.Fatalf("%s: no ENTRYPOINT: add ENTRYPOINT [%q]", dockerfile, hookbridgeBinary)
	}
	if ep := jsonArgs(t, eps[len(eps)-1]); len(ep) != 1 || ep[0] != hookbridgeBinary {
		t.Errorf("%s:%d: ENTRYPOINT %q: want [%q] (the manifests' args start with serve)", dockerfile, eps[len(eps)-1].line, ep, hookbridgeBinary)
	}
	copied := map[string]string{} // destination -> source, for COPY from the context
	hasBinary := false
	for _, in := range byCmd("COPY") {
		f := strings.Fields(in.args)
		var src []string
		from := false
		for _, a := range f {
			if strings.HasPrefix(a, "--") {
				from = from || strings.HasPrefix(a, "--from=")
				continue
			}
			src = append(src, a)
		}
		dst := src[len(src)-1]
		if from && dst == hookbridgeBinary {
			hasBinary = true
		}
		if !from && len(src) == 2 {
			copied[dst] = src[0]
		}
	}
	if !hasBinary {
		t.Errorf("%s: the final stage does not COPY --from=build the binary to %s", dockerfile, hookbridgeBinary)
	}

	// CMD: serve with a config the image carries, which loads and whose
	// state is on the VOLUME.
	cmds := byCmd("CMD")
	if len(cmds) == 0 {
		t.Fatalf("%s: no CMD: add CMD [\"serve\", \"-config\", \"/etc/hookbridge/config.yaml\", \"-log-format\", \"json\"]", dockerfile)
	}
	cfgPath, err := parseServeArgs(jsonArgs(t, cmds[len(cmds)-1]))
	if err != nil {
		t.Fatalf("%s:%d: CMD: %v", dockerfile, cmds[len(cmds)-1].line, err)
	}
	var volumes []string
	for _, in := range byCmd("VOLUME") {
		if strings.HasPrefix(in.args, "[") {
			volumes = append(volumes, jsonArgs(t, in)...)
		} else {
			volumes = append(volumes, strings.Fields(in.args)...)
		}
	}
	var imageCfgs []*bridge.Config
	if src, ok := copied[cfgPath]; !ok {
		t.Errorf("%s: CMD reads -config %s, which no COPY puts in the image", dockerfile, cfgPath)
	} else {
		local, _ := strings.CutPrefix(src, "deploy/")
		cfg := loadConfigFile(t, local, envOnly(secretEnv))
		imageCfgs = append(imageCfgs, cfg)
		for _, l := range []string{cfg.Server.Listen, cfg.Server.AdminListen} {
			if isLoopback(l) {
				t.Errorf("%s (the image's config): listen address %q is loopback: unreachable through the container's published ports; use 0.0.0.0", local, l)
			}
		}
		checkStatePaths(t, local+" (the image's config)", cfg, func(dir string) error {
			for _, v := range volumes {
				if within(dir, v) {
					return nil
				}
			}
			return fmt.Errorf("is not under a VOLUME of %s (%v): it would live in the container's writable layer and die with it", dockerfile, volumes)
		})
	}

	// EXPOSE covers the ports of the image's config and of the manifests
	// running the image.
	exposed := map[string]bool{}
	for _, in := range byCmd("EXPOSE") {
		for _, p := range strings.Fields(in.args) {
			p, _, _ = strings.Cut(p, "/")
			exposed[p] = true
		}
	}
	for _, w := range workloads(t) {
		// A manifest that does not load is TestKubernetesManifests' to report.
		if cfg, _, _, err := w.loadConfig(); err == nil {
			imageCfgs = append(imageCfgs, cfg)
		}
	}
	missing := map[string]string{}
	for _, cfg := range imageCfgs {
		for _, l := range []string{cfg.Server.Listen, cfg.Server.AdminListen} {
			if p := portOf(l); !exposed[p] {
				missing[p] = l
			}
		}
	}
	for _, p := range slices.Sorted(maps.Keys(missing)) {
		t.Errorf("%s: EXPOSE %v lacks %s, a port hookbridge listens on (%s): add it", dockerfile, slices.Sorted(maps.Keys(exposed)), p, missing[p])
	}

	// Every file copied from the context survives Dockerfile.dockerignore.
	checkDockerignore(t, stages)
}

// checkDockerignore is a light check of the "exclude everything, re-include
// what the Dockerfile copies" pattern: every context COPY source must be
// re-included by a "!" line.
func checkDockerignore(t *testing.T, stages [][]instruction) {
	t.Helper()
	data, err := os.ReadFile(dockerignore)
	if err != nil {
		t.Fatalf("%s: %v (BuildKit reads it for %s; keep .git and ./data out of the build context)", dockerignore, err, dockerfile)
	}
	var include []string
	excludeAll := false
	for _, line := range strings.Split(string(data), "\n") {
		line = strings.TrimSpace(line)
		switch {
		case line == "*":
			excludeAll = true
		case strings.HasPrefix(line, "!"):
			include = append(include, strings.TrimSuffix(strings.TrimPrefix(line, "!"), "/"))
		}
	}
	if !excludeAll {
		return
	}
	for _, st := range stages {
		for _, in := range st {
			if in.cmd != "COPY" || strings.Contains(in.args, "--from=") {
				continue
			}
			f := strings.Fields(in.args)
			for _, src := range f[:len(f)-1] {
				if strings.HasPrefix(src, "--") {
					continue
				}
				src = strings.TrimSuffix(src, "/")
				if !slices.Contains(include, src) {
					t.Errorf("%s:%d: COPY %s, which %s excludes: add the line !%s there", dockerfile, in.line, src, dockerignore, src)
				}
			}
		}
	}
}

// ---------------------------------------------------------------------------
// README.

func TestReadmeNamesWhatTheFilesNeed(t *testing.T) {
	b, err := os.ReadFile(readme)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{
		"docker build -f deploy/Dockerfile", // the build context is the repo root
		secretEnv + "=",                     // what /etc/hookbridge/env holds
		"hookbridge-webhook-secret",         // the Secret the manifests read
	} {
		if !bytes.Contains(b, []byte(s)) {
			t.Errorf("%s does not mention %q: the deployment files rely on it", readme, s)
		}
	}
	// Each manifest is described, and each Secret a manifest reads (which
	// the user creates: the files hold placeholders) is named.
	for _, file := range manifestFiles(t) {
		if !bytes.Contains(b, []byte(filepath.ToSlash(file))) {
			t.Errorf("%s does not mention %s: add it to the table and say when to use it", readme, filepath.ToSlash(file))
		}
	}
	secrets := map[string]string{}
	for _, w := range workloads(t) {
		for _, e := range w.hb.Env {
			if e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil {
				secrets[e.ValueFrom.SecretKeyRef.Name] = w.file
			}
		}
	}
	for _, name := range slices.Sorted(maps.Keys(secrets)) {
		if !bytes.Contains(b, []byte(name)) {
			t.Errorf("%s does not mention the Secret %s that %s reads: say how to create it", readme, name, secrets[name])
		}
	}
}

// ---------------------------------------------------------------------------

func loadConfigFile(t *testing.T, file string, lookupEnv func(string) (string, bool)) *bridge.Config {
	t.Helper()
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := bridge.ParseConfig(file, data, lookupEnv)
	if err != nil {
		t.Fatalf("%v", err)
	}
	return cfg
}

// envOnly is a lookupEnv in which exactly names are set.
func envOnly(names ...string) func(string) (string, bool) {
	return func(name string) (string, bool) {
		if slices.Contains(names, name) {
			return "value-of-" + name, true
		}
		return "", false
	}
}
