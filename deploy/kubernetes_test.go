package deploy

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"k8s.io/apimachinery/pkg/util/intstr"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	sigsyaml "sigs.k8s.io/yaml"

	"gopkg.in/yaml.v3"

	"github.com/hookbridge/hookbridge/bridge/queue/local"
)

// ---------------------------------------------------------------------------
// Reading the manifests into the Kubernetes API's own Go types.

// manifestDecoder decodes one manifest into the k8s.io/api type its
// apiVersion and kind name, as the API server does: strictly, so a
// misspelled, misplaced or duplicate field is an error naming its path
// (spec.template.spec.containers[1].prots), and a malformed quantity
// (memory: 128MB) or int-or-string fails to decode. A kind outside the
// groups registered here fails too: add its group's AddToScheme.
var manifestDecoder = func() runtime.Decoder {
	s := runtime.NewScheme()
	for _, add := range []func(*runtime.Scheme) error{
		corev1.AddToScheme,        // ConfigMap, Secret, Service, ...
		appsv1.AddToScheme,        // Deployment, StatefulSet, DaemonSet
		policyv1.AddToScheme,      // PodDisruptionBudget
		autoscalingv2.AddToScheme, // HorizontalPodAutoscaler
		networkingv1.AddToScheme,  // Ingress, NetworkPolicy
	} {
		if err := add(s); err != nil {
			panic(err)
		}
	}
	return serializer.NewCodecFactory(s, serializer.EnableStrict).UniversalDeserializer()
}()

// manifests is one file of kubernetes/, decoded.
type manifests struct {
	file       string
	configMaps map[string]*corev1.ConfigMap
	secrets    map[string]*corev1.Secret
	services   []*corev1.Service
	pdbs       []*policyv1.PodDisruptionBudget
	hpas       []*autoscalingv2.HorizontalPodAutoscaler
	pods       []podOwner // the objects with a pod template
}

// podOwner is an object with a pod template: a Deployment, StatefulSet,
// DaemonSet or ReplicaSet.
type podOwner struct {
	kind, name string
	line       int
	replicas   *int32 // nil: 1
	template   *corev1.PodTemplateSpec
	claims     []corev1.PersistentVolumeClaim // a StatefulSet's volumeClaimTemplates
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

// readManifests decodes every document of file, splitting them as kubectl
// does (k8s.io/apimachinery/pkg/util/yaml). Errors name the file and line.
func readManifests(t *testing.T, file string) *manifests {
	t.Helper()
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	m := &manifests{file: file, configMaps: map[string]*corev1.ConfigMap{}, secrets: map[string]*corev1.Secret{}}
	r := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(data)))
	off := 0
	for i := 1; ; i++ {
		doc, err := r.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("%s: document %d: %v", file, i, err)
		}
		var start int
		start, off = docStart(data, off, doc)
		// yaml.v3 for positions only: the API's decoder names a field by
		// its path, never by its line. Its errors are the decoder's to
		// report; without a tree, positions fall back to the document.
		var root yaml.Node
		_ = yaml.Unmarshal(doc, &root)
		if js, err := sigsyaml.YAMLToJSON(doc); err != nil {
			t.Fatalf("%s: document %d: %v", file, i, err)
		} else if string(js) == "null" {
			continue // comments only, e.g. the file's header
		}
		pos := func(line int) string {
			if start == 0 || line == 0 {
				return fmt.Sprintf("%s: document %d", file, i)
			}
			return fmt.Sprintf("%s:%d", file, start+line-1)
		}
		first := 0 // the line of the document's first key
		if len(root.Content) > 0 && len(root.Content[0].Content) > 0 {
			first = root.Content[0].Content[0].Line
		}
		where := pos(first)
		obj, gvk, err := manifestDecoder.Decode(doc, nil, nil)
		if err != nil {
			t.Fatalf("%s: %s%s", where, fixLines(err.Error(), pos), explainDecodeError(err, &root, pos))
		}
		meta, ok := obj.(metav1.Object)
		if !ok || meta.GetName() == "" {
			t.Errorf("%s: %s: metadata.name is required", where, gvk.Kind)
			continue
		}
		name, line := meta.GetName(), 0
		if start > 0 {
			line = start + first - 1
		}
		switch o := obj.(type) {
		case *corev1.ConfigMap:
			m.configMaps[name] = o
		case *corev1.Secret:
			m.secrets[name] = o
		case *corev1.Service:
			m.services = append(m.services, o)
		case *policyv1.PodDisruptionBudget:
			m.pdbs = append(m.pdbs, o)
		case *autoscalingv2.HorizontalPodAutoscaler:
			m.hpas = append(m.hpas, o)
		case *appsv1.Deployment:
			m.pods = append(m.pods, podOwner{gvk.Kind, name, line, o.Spec.Replicas, &o.Spec.Template, nil})
		case *appsv1.StatefulSet:
			m.pods = append(m.pods, podOwner{gvk.Kind, name, line, o.Spec.Replicas, &o.Spec.Template, o.Spec.VolumeClaimTemplates})
		case *appsv1.ReplicaSet:
			m.pods = append(m.pods, podOwner{gvk.Kind, name, line, o.Spec.Replicas, &o.Spec.Template, nil})
		case *appsv1.DaemonSet:
			m.pods = append(m.pods, podOwner{gvk.Kind, name, line, nil, &o.Spec.Template, nil})
		}
	}
	return m
}

// docStart returns the line in data where doc starts, looking from offset
// off, and the offset past doc. doc is a run of data's lines as
// utilyaml.YAMLReader returns it (with a '\n' added to the last line if
// the file lacks one); the line is 0 if it is not found (CRLF line ends).
func docStart(data []byte, off int, doc []byte) (line, next int) {
	at := bytes.Index(data[off:], bytes.TrimSuffix(doc, []byte("\n")))
	if at < 0 {
		return 0, off
	}
	at += off
	return 1 + bytes.Count(data[:at], []byte("\n")), min(at+len(doc), len(data))
}

var (
	yamlLine     = regexp.MustCompile(`\bline (\d+)\b`)
	unknownField = regexp.MustCompile(`unknown field "([^"]+)"`)
	fieldStep    = regexp.MustCompile(`([^.\[\]]+)|\[(\d+)\]`)
)

// fixLines rewrites the document-relative "line N" of a YAML error into
// the file's.
func fixLines(msg string, pos func(int) string) string {
	return yamlLine.ReplaceAllStringFunc(msg, func(s string) string {
		n, _ := strconv.Atoi(yamlLine.FindStringSubmatch(s)[1])
		return "at " + pos(n)
	})
}

// explainDecodeError locates what the decoder's error names by path (an
// unknown field) or not at all (a malformed quantity), one line each.
func explainDecodeError(err error, root *yaml.Node, pos func(int) string) string {
	var b strings.Builder
	if runtime.IsNotRegisteredError(err) {
		fmt.Fprintf(&b, "\n\t%s: fix kind or apiVersion (kubectl api-resources lists them), or add the kind's API group to manifestDecoder", pos(fieldLine(root, "kind")))
	}
	for _, m := range unknownField.FindAllStringSubmatch(err.Error(), -1) {
		fmt.Fprintf(&b, "\n\t%s: %s: unknown field: a typo, or a field of another kind, apiVersion or level", pos(fieldLine(root, m[1])), m[1])
	}
	walkQuantities(root, "", func(path string, n *yaml.Node) {
		if _, err := resource.ParseQuantity(n.Value); err != nil {
			fmt.Fprintf(&b, "\n\t%s: %s %q: %v (e.g. 128Mi, 2Gi, 500m)", pos(n.Line), path, n.Value, err)
		}
	})
	return b.String()
}

// fieldLine is the line of the field at path (as the API spells it:
// spec.containers[1].ports[0].name) in a yaml.v3 document; 0 if absent.
func fieldLine(root *yaml.Node, path string) int {
	n, line := root, 0
	if n.Kind == yaml.DocumentNode && len(n.Content) > 0 {
		n = n.Content[0]
	}
	for _, step := range fieldStep.FindAllStringSubmatch(path, -1) {
		switch {
		case step[1] != "" && n.Kind == yaml.MappingNode:
			next := (*yaml.Node)(nil)
			for i := 0; i+1 < len(n.Content); i += 2 {
				if n.Content[i].Value == step[1] {
					line, next = n.Content[i].Line, n.Content[i+1]
				}
			}
			if next == nil {
				return 0
			}
			n = next
		case step[2] != "" && n.Kind == yaml.SequenceNode:
			i, _ := strconv.Atoi(step[2])
			if i >= len(n.Content) {
				return 0
			}
			n = n.Content[i]
			line = n.Line
		default:
			return 0
		}
	}
	return line
}

// walkQuantities calls f with each quantity of a manifest: the values of
// resources' requests and limits (containers, claims) and an emptyDir's
// sizeLimit.
func walkQuantities(n *yaml.Node, path string, f func(path string, n *yaml.Node)) {
	join := func(k string) string {
		if path == "" {
			return k
		}
		return path + "." + k
	}
	switch n.Kind {
	case yaml.DocumentNode:
		for _, c := range n.Content {
			walkQuantities(c, path, f)
		}
	case yaml.SequenceNode:
		for i, c := range n.Content {
			walkQuantities(c, fmt.Sprintf("%s[%d]", path, i), f)
		}
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i].Value, n.Content[i+1]
			switch {
			case (k == "requests" || k == "limits") && v.Kind == yaml.MappingNode:
				for j := 0; j+1 < len(v.Content); j += 2 {
					f(join(k)+"."+v.Content[j].Value, v.Content[j+1])
				}
			case k == "sizeLimit" && v.Kind == yaml.ScalarNode:
				f(join(k), v)
			default:
				walkQuantities(v, join(k), f)
			}
		}
	}
}

// workload is the hookbridge container of one pod template, and the
// objects of its file it relies on.
type workload struct {
	*manifests
	podOwner
	pod *corev1.PodSpec
	hb  *corev1.Container
}

func (w workload) String() string { return fmt.Sprintf("%s:%d: %s %s", w.file, w.line, w.kind, w.name) }

// isHookbridge tells the hookbridge container from the app's.
func isHookbridge(c *corev1.Container) bool {
	return c.Name == "hookbridge" || strings.Contains(c.Image, "/hookbridge")
}

// containers are all the containers of a pod, init containers first.
func containers(pod *corev1.PodSpec) []*corev1.Container {
	var cs []*corev1.Container
	for i := range pod.InitContainers {
		cs = append(cs, &pod.InitContainers[i])
	}
	for i := range pod.Containers {
		cs = append(cs, &pod.Containers[i])
	}
	return cs
}

func workloads(t *testing.T) []workload {
	t.Helper()
	var ws []workload
	for _, file := range manifestFiles(t) {
		m := readManifests(t, file)
		n := 0
		for _, o := range m.pods {
			pod := &o.template.Spec
			for _, c := range containers(pod) {
				if isHookbridge(c) {
					ws = append(ws, workload{manifests: m, podOwner: o, pod: pod, hb: c})
					n++
				}
			}
		}
		if n == 0 {
			t.Errorf("%s: no workload runs a hookbridge container (named hookbridge or with a .../hookbridge image)", file)
		}
	}
	return ws
}

// ---------------------------------------------------------------------------
// The config each workload loads.

// Every ConfigMap in kubernetes/ whose key ends in .yaml loads, even one
// no workload mounts, with the webhook secret and the env the file's
// hookbridge containers set (e.g. a NATS password); TestKubernetesManifests
// checks each mounted config against its own container's env exactly.
func TestConfigMapConfigsLoad(t *testing.T) {
	for _, file := range manifestFiles(t) {
		m := readManifests(t, file)
		env := []string{secretEnv}
		for _, o := range m.pods {
			for _, c := range containers(&o.template.Spec) {
				if isHookbridge(c) {
					for _, e := range c.Env {
						env = append(env, e.Name)
					}
				}
			}
		}
		for _, cmName := range slices.Sorted(maps.Keys(m.configMaps)) {
			cm := m.configMaps[cmName]
			for _, key := range slices.Sorted(maps.Keys(cm.Data)) {
				if !strings.HasSuffix(key, ".yaml") {
					continue
				}
				name := fmt.Sprintf("%s: ConfigMap %s key %s", file, cmName, key)
				if _, err := parseConfig(name, []byte(cm.Data[key]), envOnly(env...)); err != nil {
					t.Errorf("%v", err)
				}
			}
		}
	}
}

// load finds the config file the container's -config names, in the
// ConfigMap mounted there, and loads it with exactly the container's env.
func (w workload) load(t *testing.T) (*hbConfig, string) {
	t.Helper()
	cfg, cfgPath, asked, err := w.loadConfig()
	if err != nil {
		t.Fatal(err)
	}
	// A secret handed to the container that the config never reads is a
	// typo on one side or the other.
	for _, e := range w.hb.Env {
		if ref := secretRef(e); ref != nil && !asked[e.Name] {
			t.Errorf("%v: container %s gets %s from Secret %s, but the config never reads ${%s}: fix the env name or the config's secrets", w, w.hb.Name, e.Name, ref.Name, e.Name)
		}
	}
	return cfg, cfgPath
}

func secretRef(e corev1.EnvVar) *corev1.SecretKeySelector {
	if e.ValueFrom == nil {
		return nil
	}
	return e.ValueFrom.SecretKeyRef
}

// loadConfig is load's work; asked holds the env names the config read.
func (w workload) loadConfig() (cfg *hbConfig, cfgPath string, asked map[string]bool, err error) {
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
	var vol *corev1.Volume
	var key string
	for _, m := range w.hb.VolumeMounts {
		v := w.volume(m.Name)
		if v == nil || v.ConfigMap == nil {
			continue
		}
		// The path of the config inside the volume.
		var rel string
		if m.SubPath != "" {
			if m.MountPath != cfgPath {
				continue
			}
			rel = m.SubPath
		} else if r, ok := strings.CutPrefix(cfgPath, strings.TrimSuffix(m.MountPath, "/")+"/"); ok {
			rel = r
		} else {
			continue
		}
		vol, key = v, rel
		if items := v.ConfigMap.Items; len(items) > 0 {
			// Only the listed keys are projected, each at its path.
			key = ""
			for _, it := range items {
				if it.Path == rel {
					key = it.Key
				}
			}
			if key == "" {
				return nil, "", nil, fmt.Errorf("%v: -config %s is %s in volume %s, but its configMap.items project no key at path %s: add an item or fix -config", w, cfgPath, rel, v.Name, rel)
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
		return nil, "", nil, fmt.Errorf("%v: -config %s reads key %q of ConfigMap %s, which has keys %v: rename the key or fix -config", w, cfgPath, key, cm.Name, slices.Sorted(maps.Keys(cm.Data)))
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
	name := fmt.Sprintf("%s (ConfigMap %s, key %s)", w.file, cm.Name, key)
	cfg, err = parseConfig(name, []byte(data), lookup)
	if err != nil {
		return nil, "", nil, fmt.Errorf("%v\n(the hookbridge container sets env %v: a ${VAR} the config reads must be one of them)", err, slices.Sorted(maps.Keys(set)))
	}
	return cfg, cfgPath, asked, nil
}

func (w workload) volume(name string) *corev1.Volume {
	for i := range w.pod.Volumes {
		if w.pod.Volumes[i].Name == name {
			return &w.pod.Volumes[i]
		}
	}
	return nil
}

// writable reports whether a volume of the pod can hold the spool, and its
// size limit (nil when none is known).
func (w workload) writable(name string) (ok bool, size *resource.Quantity) {
	if v := w.volume(name); v != nil {
		switch {
		case v.EmptyDir != nil:
			return true, v.EmptyDir.SizeLimit
		case v.PersistentVolumeClaim != nil:
			return true, nil
		}
		return false, nil
	}
	for _, c := range w.claims {
		if c.Name == name {
			if q, ok := c.Spec.Resources.Requests[corev1.ResourceStorage]; ok {
				return true, &q
			}
			return true, nil
		}
	}
	return false, nil
}

// containerPort resolves a probe's or Service's port (a name or a number)
// among the container ports of only, or of the whole pod when only is nil.
func (w workload) containerPort(p intstr.IntOrString, only *corev1.Container) (int, error) {
	cs := containers(w.pod)
	if only != nil {
		cs = []*corev1.Container{only}
	}
	if p.Type == intstr.Int {
		if p.IntVal == 0 {
			return 0, errors.New("no port")
		}
		for _, c := range cs {
			for _, cp := range c.Ports {
				if cp.ContainerPort == p.IntVal {
					return int(p.IntVal), nil
				}
			}
		}
		return int(p.IntVal), fmt.Errorf("port %d is not a containerPort", p.IntVal)
	}
	for _, c := range cs {
		for _, cp := range c.Ports {
			if cp.Name == p.StrVal {
				return int(cp.ContainerPort), nil
			}
		}
	}
	return 0, fmt.Errorf("port name %q is not the name of a containerPort", p.StrVal)
}

// selects reports whether a label selector with at least one requirement
// selects pods labeled podLabels.
func selects(sel *metav1.LabelSelector, podLabels map[string]string) bool {
	if sel == nil || len(sel.MatchLabels)+len(sel.MatchExpressions) == 0 {
		return false
	}
	s, err := metav1.LabelSelectorAsSelector(sel)
	return err == nil && s.Matches(labels.Set(podLabels))
}

// mountOf returns the deepest volumeMount containing dir.
func mountOf(mounts []corev1.VolumeMount, dir string) (corev1.VolumeMount, bool) {
	var best corev1.VolumeMount
	found := false
	for _, m := range mounts {
		if within(dir, m.MountPath) && (!found || len(m.MountPath) > len(best.MountPath)) {
			best, found = m, true
		}
	}
	return best, found
}

// ---------------------------------------------------------------------------
// The checks.

func TestKubernetesManifests(t *testing.T) {
	for _, w := range workloads(t) {
		t.Run(w.file+"/"+w.name, func(t *testing.T) {
			cfg, cfgPath := w.load(t)
			listenPort := port(t, w, "server.listen", cfg.Listen)
			adminPort := port(t, w, "server.admin_listen", cfg.AdminListen)

			// Reachable: the kubelet and Services use the pod IP.
			for _, l := range []struct{ key, addr string }{
				{"server.listen", cfg.Listen}, {"server.admin_listen", cfg.AdminListen},
			} {
				if isLoopback(l.addr) {
					t.Errorf("%v: %s %q is loopback: nothing outside the pod reaches it (the kubelet's probes, the Service); write \"0.0.0.0:%s\"", w, l.key, l.addr, portOf(l.addr))
				}
			}

			// Ports.
			hbPorts := map[int]string{}
			for _, p := range w.hb.Ports {
				hbPorts[int(p.ContainerPort)] = p.Name
			}
			if _, ok := hbPorts[listenPort]; !ok {
				t.Errorf("%v: container %s has no containerPort %d, the port of server.listen %q: add it (name: webhook)", w, w.hb.Name, listenPort, cfg.Listen)
			}
			if _, ok := hbPorts[adminPort]; !ok {
				t.Errorf("%v: container %s has no containerPort %d, the port of server.admin_listen %q: add it (name: admin)", w, w.hb.Name, adminPort, cfg.AdminListen)
			}

			checkProbes(t, w, cfg, adminPort)
			checkServices(t, w, cfg, listenPort, adminPort)
			checkPrometheus(t, fmt.Sprintf("%v: pod template", w), w.template.Annotations, adminPort)
			checkVolumes(t, w, cfg, cfgPath)
			checkSecretRefs(t, w)
			checkResources(t, w, cfg)

			// Files the config reads (NATS creds) are mounted.
			checkMountedFiles(t, w, cfg)

			// Replica count, autoscalers, disruption budgets, spreading.
			minReplicas := checkAutoscalers(t, w)
			pdbs := checkDisruptionBudgets(t, w, minReplicas)
			if cfg.SpoolBackend == spoolJetStream {
				checkScaleOut(t, w, cfg, minReplicas, pdbs)
			} else if filepath.Base(w.file) == scaleOutFile {
				t.Errorf("%v: spool.backend is %s: %s is the shared-spool shape, set spool.backend: jetstream (a per-replica spool belongs in standalone.yaml)", w, cfg.SpoolBackend, scaleOutFile)
			}

			// Shutdown: the kubelet's SIGKILL comes after the grace period.
			grace := int64(corev1.DefaultTerminationGracePeriodSeconds)
			if w.pod.TerminationGracePeriodSeconds != nil {
				grace = *w.pod.TerminationGracePeriodSeconds
			}
			if time.Duration(grace)*time.Second <= cfg.ShutdownTimeout {
				t.Errorf("%v: terminationGracePeriodSeconds %d is not longer than server.shutdown_timeout %v: the kubelet would SIGKILL hookbridge mid-shutdown; raise it (e.g. to %d)", w, grace, cfg.ShutdownTimeout, int64(cfg.ShutdownTimeout/time.Second)+15)
			}

			checkSecurityContext(t, w)
		})
	}
}

// checkProbes: liveness and startup must not depend on the brokers
// (/healthz), readiness does (/readyz); all on the admin port.
func checkProbes(t *testing.T, w workload, cfg *hbConfig, adminPort int) {
	t.Helper()
	for _, pr := range []struct {
		kind string
		p    *corev1.Probe
		want string
	}{
		{"livenessProbe", w.hb.LivenessProbe, healthzPath},
		{"startupProbe", w.hb.StartupProbe, healthzPath},
		{"readinessProbe", w.hb.ReadinessProbe, readyzPath},
	} {
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
			served := []string{healthzPath, readyzPath}
			if slices.Contains(served, p) {
				t.Errorf("%v: container %s: %s path %s: use %s (liveness and startup on %s, which does not depend on the brokers; readiness on %s)", w, w.hb.Name, pr.kind, p, pr.want, healthzPath, readyzPath)
			} else {
				t.Errorf("%v: container %s: %s path %q is not served by the admin listener (it serves %v): use %s", w, w.hb.Name, pr.kind, p, served, pr.want)
			}
		}
		got, err := w.containerPort(pr.p.HTTPGet.Port, w.hb)
		switch {
		case err != nil:
			t.Errorf("%v: container %s: %s: %v: use port admin", w, w.hb.Name, pr.kind, err)
		case got != adminPort:
			t.Errorf("%v: container %s: %s probes port %d, but the admin listener (server.admin_listen %q) is on %d: use port admin", w, w.hb.Name, pr.kind, got, cfg.AdminListen, adminPort)
		}
	}
}

// checkServices: some Service selecting the pod targets the webhook port,
// and none puts the admin port outside the cluster.
func checkServices(t *testing.T, w workload, cfg *hbConfig, listenPort, adminPort int) {
	t.Helper()
	podLabels := w.template.Labels
	webhookServed := false
	for _, svc := range w.services {
		sel := svc.Spec.Selector
		if len(sel) == 0 || !labels.SelectorFromSet(sel).Matches(labels.Set(podLabels)) {
			continue
		}
		targets := map[int]bool{}
		for _, sp := range svc.Spec.Ports {
			tp := sp.TargetPort
			if tp.Type == intstr.Int && tp.IntVal == 0 {
				tp = intstr.FromInt32(sp.Port) // the default: port
			}
			got, err := w.containerPort(tp, nil)
			if err != nil {
				t.Errorf("%s: Service %s port %s: targetPort: %v of %s %s: fix targetPort", w.file, svc.Name, sp.Name, err, w.kind, w.name)
				continue
			}
			targets[got] = true
		}
		if targets[listenPort] {
			webhookServed = true
			if targets[adminPort] {
				t.Errorf("%s: Service %s exposes both the webhook port %d and the admin port %d: the admin listener must not face the internet; give metrics their own ClusterIP Service", w.file, svc.Name, listenPort, adminPort)
			}
		}
		if typ := svc.Spec.Type; targets[adminPort] && (typ == corev1.ServiceTypeLoadBalancer || typ == corev1.ServiceTypeNodePort) {
			t.Errorf("%s: Service %s of type %s exposes the admin port %d: use ClusterIP", w.file, svc.Name, typ, adminPort)
		}
		checkPrometheus(t, fmt.Sprintf("%s: Service %s", w.file, svc.Name), svc.Annotations, adminPort)
	}
	if !webhookServed {
		t.Errorf("%v: no Service in %s selects this pod (labels %v) with a port targeting the webhook port %d (server.listen %q): add one, targetPort: webhook", w, w.file, podLabels, listenPort, cfg.Listen)
	}
}

func checkPrometheus(t *testing.T, where string, ann map[string]string, adminPort int) {
	t.Helper()
	if p, ok := ann["prometheus.io/port"]; ok && p != strconv.Itoa(adminPort) {
		t.Errorf("%s: annotation prometheus.io/port %q: metrics are on the admin port %d", where, p, adminPort)
	}
	if p, ok := ann["prometheus.io/path"]; ok && p != metricsPath {
		t.Errorf("%s: annotation prometheus.io/path %q: hookbridge serves metrics at %s", where, p, metricsPath)
	}
}

// checkVolumes: the state hookbridge writes is on a writable volume large
// enough for the spool, and the config's mount is read-only.
func checkVolumes(t *testing.T, w workload, cfg *hbConfig, cfgPath string) {
	t.Helper()
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
		// The log holds what waits at most 1.5 times over, plus two
		// segments, while its oldest segment drains (docs/delivery.md,
		// The local log); an outage's traffic on top is the operator's
		// to size for, and no manifest can state it.
		if need := cfg.SpoolMaxBytes + cfg.SpoolMaxBytes/2 + 2*local.DefaultSegmentBytes; size != nil && cfg.LocalSpool && dir == cfg.SpoolDir && size.Value() < need {
			return fmt.Errorf("is on volume %s of %s (%d bytes), smaller than a full spool's log can grow (1.5 × spool.max_bytes %d + two segments = %d): a full spool would fill the volume (an emptyDir over its sizeLimit gets the pod evicted); lower max_bytes or grow the volume", m.Name, size, size.Value(), cfg.SpoolMaxBytes, need)
		}
		return nil
	})

	// The ConfigMap mount and -config agree (load found it there), and the
	// config must not be writable.
	if m, ok := mountOf(w.hb.VolumeMounts, cfgPath); ok && !m.ReadOnly {
		t.Errorf("%v: volumeMount %s (%s) holds the config: set readOnly: true", w, m.Name, m.MountPath)
	}
}

// checkSecretRefs: the Secrets the env reads exist, with the key.
func checkSecretRefs(t *testing.T, w workload) {
	t.Helper()
	for _, e := range w.hb.Env {
		ref := secretRef(e)
		if ref == nil {
			continue
		}
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
}

// checkResources: every container's requests fit its limits (the API
// server rejects the pod otherwise), an env read from a limit
// (GOMEMLIMIT from limits.memory) has that limit to read, and the memory
// limit holds what hookbridge check adds up: the requests' worst case and
// a full local spool's index (else hookbridge warns at start, and a long
// outage ends in the OOM killer).
func checkResources(t *testing.T, w workload, cfg *hbConfig) {
	t.Helper()
	if lim, ok := w.hb.Resources.Limits[corev1.ResourceMemory]; ok {
		for _, warn := range cfg.MemoryWarnings("limits.memory", lim.Value()) {
			t.Errorf("%v: %s", w, warn)
		}
	}
	for _, c := range containers(w.pod) {
		for _, name := range slices.Sorted(maps.Keys(c.Resources.Requests)) {
			req := c.Resources.Requests[name]
			if lim, ok := c.Resources.Limits[name]; ok && req.Cmp(lim) > 0 {
				t.Errorf("%v: container %s requests %s %s, more than its limit %s: the API server rejects the pod; lower the request or raise the limit", w, c.Name, name, req.String(), lim.String())
			}
		}
	}
	for _, e := range w.hb.Env {
		if e.ValueFrom == nil || e.ValueFrom.ResourceFieldRef == nil {
			continue
		}
		res := e.ValueFrom.ResourceFieldRef.Resource
		if lim, ok := strings.CutPrefix(res, "limits."); ok {
			if _, set := w.hb.Resources.Limits[corev1.ResourceName(lim)]; !set {
				t.Errorf("%v: container %s: env %s reads %s, but the container sets no resources.limits.%s: the kubelet would hand it the node's allocatable instead; set the limit", w, w.hb.Name, e.Name, res, lim)
			}
		}
	}
}

// checkSecurityContext: non-root, read-only, no privilege escalation, no
// capabilities (the container's securityContext overrides the pod's).
func checkSecurityContext(t *testing.T, w workload) {
	t.Helper()
	var nonRoot *bool
	if ps := w.pod.SecurityContext; ps != nil {
		nonRoot = ps.RunAsNonRoot
		if ps.RunAsUser != nil && *ps.RunAsUser == 0 {
			t.Errorf("%v: securityContext.runAsUser 0 is root: use 65532, the image's user", w)
		}
	}
	sc := w.hb.SecurityContext
	if sc != nil {
		if sc.RunAsNonRoot != nil {
			nonRoot = sc.RunAsNonRoot
		}
		if sc.RunAsUser != nil && *sc.RunAsUser == 0 {
			t.Errorf("%v: container %s: securityContext.runAsUser 0 is root: use 65532, the image's user", w, w.hb.Name)
		}
	}
	if nonRoot == nil || !*nonRoot {
		t.Errorf("%v: container %s: set securityContext.runAsNonRoot: true (the image runs as 65532)", w, w.hb.Name)
	}
	if sc == nil {
		t.Errorf("%v: container %s has no securityContext: set readOnlyRootFilesystem: true, allowPrivilegeEscalation: false, capabilities.drop [ALL]", w, w.hb.Name)
		return
	}
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

// scaleOutFile is the manifest of the shared (jetstream) spool: its
// workload must keep spool.backend: jetstream.
const scaleOutFile = "scaleout.yaml"

// checkMountedFiles checks that every file the config reads at start (NATS
// creds, TLS certificates, secret files) is under a volumeMount: the image
// has none of them.
func checkMountedFiles(t *testing.T, w workload, cfg *hbConfig) {
	t.Helper()
	files := map[string]string{}
	if cfg.SpoolBackend == spoolJetStream && cfg.SpoolCredsFile != "" {
		files["spool.creds_file"] = cfg.SpoolCredsFile
	}
	for i, sk := range cfg.Sinks {
		if sk.NATS != nil && sk.NATS.CredsFile != "" {
			files[fmt.Sprintf("sinks[%d] (%s) creds_file", i, sk.Name)] = sk.NATS.CredsFile
		}
	}
	files["server.tls.cert_file"], files["server.tls.key_file"] = cfg.TLSCertFile, cfg.TLSKeyFile
	for i, sf := range cfg.SecretFiles {
		for j, f := range sf {
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
	if w.replicas != nil {
		least = int(*w.replicas)
	}
	for _, o := range w.hpas {
		if o.Spec.ScaleTargetRef.Kind != w.kind || o.Spec.ScaleTargetRef.Name != w.name {
			continue
		}
		where := fmt.Sprintf("%s: HorizontalPodAutoscaler %s", w.file, o.Name)
		least = 1
		if o.Spec.MinReplicas != nil {
			least = int(*o.Spec.MinReplicas)
		}
		most := int(o.Spec.MaxReplicas)
		if most < least {
			t.Errorf("%s: maxReplicas %d is below minReplicas %d", where, most, least)
		}
		if r := w.replicas; r != nil && (int(*r) < least || int(*r) > most) {
			t.Errorf("%s: %s %s has replicas %d, outside minReplicas..maxReplicas (%d..%d): every kubectl apply would move it there until the autoscaler moves it back", where, w.kind, w.name, *r, least, most)
		}
		for _, m := range o.Spec.Metrics {
			if m.Type != autoscalingv2.ResourceMetricSourceType || m.Resource == nil || m.Resource.Target.Type != autoscalingv2.UtilizationMetricType {
				continue
			}
			// Utilization is a percentage of the request, of every container.
			for _, c := range containers(w.pod) {
				if _, ok := c.Resources.Requests[m.Resource.Name]; !ok {
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
func checkDisruptionBudgets(t *testing.T, w workload, least int) []*policyv1.PodDisruptionBudget {
	t.Helper()
	var out []*policyv1.PodDisruptionBudget
	for _, o := range w.pdbs {
		if !selects(o.Spec.Selector, w.template.Labels) {
			continue
		}
		out = append(out, o)
		where := fmt.Sprintf("%s: PodDisruptionBudget %s (for %s %s)", w.file, o.Name, w.kind, w.name)
		minA, maxU := o.Spec.MinAvailable, o.Spec.MaxUnavailable
		if (minA == nil) == (maxU == nil) {
			t.Errorf("%s: give exactly one of minAvailable and maxUnavailable (maxUnavailable: 1)", where)
			continue
		}
		// The disruption controller rounds percentages up, for both.
		if maxU != nil {
			if n, err := intstr.GetScaledValueFromIntOrPercent(maxU, least, true); err != nil {
				t.Errorf("%s: maxUnavailable: %v", where, err)
			} else if n <= 0 {
				t.Errorf("%s: maxUnavailable %s blocks every node drain: use 1", where, maxU)
			}
		}
		if minA != nil {
			if n, err := intstr.GetScaledValueFromIntOrPercent(minA, least, true); err != nil {
				t.Errorf("%s: minAvailable: %v", where, err)
			} else if n >= least {
				t.Errorf("%s: minAvailable %s with as few as %d replicas blocks every node drain: use maxUnavailable: 1", where, minA, least)
			}
		}
	}
	return out
}

// checkScaleOut checks a workload on the shared jetstream spool: its
// replicas hold no state, so it must run as several interchangeable pods
// spread over nodes, and the stream must outlive a NATS node.
func checkScaleOut(t *testing.T, w workload, cfg *hbConfig, least int, pdbs []*policyv1.PodDisruptionBudget) {
	t.Helper()
	if w.kind != "Deployment" {
		t.Errorf("%v: with spool.backend: jetstream the replicas hold no state: run them as a Deployment", w)
	}
	if len(w.claims) > 0 {
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
	podLabels := w.template.Labels
	const hostname = "kubernetes.io/hostname"
	spread := false
	for _, c := range w.pod.TopologySpreadConstraints {
		spread = spread || c.TopologyKey == hostname && selects(c.LabelSelector, podLabels)
	}
	if a := w.pod.Affinity; a != nil && a.PodAntiAffinity != nil {
		terms := a.PodAntiAffinity.RequiredDuringSchedulingIgnoredDuringExecution
		for _, p := range a.PodAntiAffinity.PreferredDuringSchedulingIgnoredDuringExecution {
			terms = append(terms, p.PodAffinityTerm)
		}
		for _, term := range terms {
			spread = spread || term.TopologyKey == hostname && selects(term.LabelSelector, podLabels)
		}
	}
	if !spread {
		t.Errorf("%v: nothing spreads its replicas over nodes: add a topologySpreadConstraint (or podAntiAffinity) on %s selecting %v, so one node's loss takes one replica", w, hostname, podLabels)
	}
	if cfg.ReplayCache != replayCacheNATS {
		t.Errorf("%v: server.replay_cache is %s: set it to %s, or a Browser Use retry landing on another replica (after spool.duplicates) is delivered again", w, cfg.ReplayCache, replayCacheNATS)
	}
	if cfg.SpoolReplicas < 3 {
		t.Errorf("%v: spool.replicas %d: the stream holds every accepted event not yet delivered; keep 3 copies so losing a NATS node loses none", w, cfg.SpoolReplicas)
	}
	if h := loopbackURL(cfg.SpoolURL); h != "" {
		t.Errorf("%v: spool.url names %s, the pod itself: every replica must reach the same NATS cluster; write its Service or pods", w, h)
	}
	for i, sk := range cfg.Sinks {
		o := sk.NATS
		if o == nil {
			continue
		}
		switch {
		case o.Embedded:
			t.Errorf("%v: sinks[%d] (%s) is embedded NATS: each replica would run its own, and the events would scatter over them; point it at the shared cluster", w, i, sk.Name)
		case loopbackURL(o.URL) != "":
			t.Errorf("%v: sinks[%d] (%s) url names %s, the pod itself: point it at the shared NATS cluster", w, i, sk.Name, loopbackURL(o.URL))
		case o.JetStream && o.CreatesStream && o.StreamReplicas < cfg.SpoolReplicas:
			t.Errorf("%v: sinks[%d] (%s) would create its stream %s with stream.replicas %d, fewer than spool.replicas %d: an event leaving the spool would lose its durability; set stream.replicas: %d", w, i, sk.Name, o.StreamName, o.StreamReplicas, cfg.SpoolReplicas, cfg.SpoolReplicas)
		}
	}
}

// Every HorizontalPodAutoscaler scales a hookbridge workload of its file.
func TestAutoscalersTargetAWorkload(t *testing.T) {
	ws := workloads(t)
	for _, file := range manifestFiles(t) {
		for _, o := range readManifests(t, file).hpas {
			ref := o.Spec.ScaleTargetRef
			if !slices.ContainsFunc(ws, func(w workload) bool { return w.file == file && w.kind == ref.Kind && w.name == ref.Name }) {
				t.Errorf("%s: HorizontalPodAutoscaler %s scales %s %s, which is not a hookbridge workload in the file: fix scaleTargetRef", file, o.Name, ref.Kind, ref.Name)
			}
		}
	}
}

func TestManifestPositions(t *testing.T) {
	data := []byte("# header\n---\n# a comment\napiVersion: v1\nkind: A\n---\nkind: B\nspec:\n  containers:\n    - name: a\n      resources:\n        limits: {memory: 1Gi, cpu: 2x}\n")
	r := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(data)))
	var starts []int
	var last []byte
	off := 0
	for {
		doc, err := r.Read()
		if err != nil {
			break
		}
		var start int
		start, off = docStart(data, off, doc)
		starts = append(starts, start)
		last = doc
	}
	if want := []int{1, 3, 7}; !slices.Equal(starts, want) {
		t.Errorf("docStart: documents start on lines %v, want %v", starts, want)
	}
	var root yaml.Node
	if err := yaml.Unmarshal(last, &root); err != nil {
		t.Fatal(err)
	}
	for path, want := range map[string]int{"kind": 1, "spec.containers[0].name": 4, "spec.containers[0].resources.limits": 6, "spec.containers[1]": 0, "spec.nope": 0} {
		if got := fieldLine(&root, path); got != want {
			t.Errorf("fieldLine(%s) = %d, want %d", path, got, want)
		}
	}
	var qs []string
	walkQuantities(&root, "", func(path string, n *yaml.Node) { qs = append(qs, path+"="+n.Value) })
	if want := []string{"spec.containers[0].resources.limits.memory=1Gi", "spec.containers[0].resources.limits.cpu=2x"}; !slices.Equal(qs, want) {
		t.Errorf("walkQuantities: %v, want %v", qs, want)
	}
	pos := func(n int) string { return fmt.Sprintf("f.yaml:%d", 6+n) }
	if got, want := fixLines("yaml: line 3: key \"a\" already set", pos), "yaml: at f.yaml:9: key \"a\" already set"; got != want {
		t.Errorf("fixLines: %q, want %q", got, want)
	}
}
