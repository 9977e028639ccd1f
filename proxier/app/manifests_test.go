package app

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	v1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/runtime"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/yaml"
)

// The manifests are validated here by decoding them with client-go's
// scheme (strictly: unknown fields fail) and checking what the DaemonSet
// promises; e2e/manifests_test.go also has the lab's apiserver dry-run
// `kubectl apply -k manifests/`.

type kustomization struct {
	APIVersion string   `json:"apiVersion"`
	Kind       string   `json:"kind"`
	Namespace  string   `json:"namespace"`
	Resources  []string `json:"resources"`
	Images     []struct {
		Name    string `json:"name"`
		NewName string `json:"newName"`
		NewTag  string `json:"newTag"`
	} `json:"images"`
}

func readManifests(t *testing.T) (kustomization, []runtime.Object) {
	t.Helper()
	var k kustomization
	b, err := os.ReadFile("../../manifests/kustomization.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.UnmarshalStrict(b, &k); err != nil {
		t.Fatalf("kustomization.yaml: %v", err)
	}
	var objs []runtime.Object
	for _, res := range k.Resources {
		b, err := os.ReadFile(filepath.Join("../../manifests", res))
		if err != nil {
			t.Fatalf("resource %s: %v", res, err)
		}
		r := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(b)))
		for {
			doc, err := r.Read()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				t.Fatalf("%s: %v", res, err)
			}
			if len(bytes.TrimSpace(doc)) == 0 {
				continue
			}
			obj, _, err := scheme.Codecs.UniversalDeserializer().Decode(doc, nil, nil)
			if err != nil {
				t.Fatalf("%s: %v", res, err)
			}
			// Strict: a misspelt field would be silently dropped by the API.
			js, err := yaml.YAMLToJSONStrict(doc)
			if err != nil {
				t.Fatalf("%s: %v", res, err)
			}
			if err := strictFields(js, obj); err != nil {
				t.Fatalf("%s: %v", res, err)
			}
			objs = append(objs, obj)
		}
	}
	return k, objs
}

// strictFields fails on fields the Go type does not have.
func strictFields(js []byte, obj runtime.Object) error {
	fresh, err := scheme.Scheme.New(obj.GetObjectKind().GroupVersionKind())
	if err != nil {
		return err
	}
	return yaml.UnmarshalStrict(js, fresh)
}

func TestManifests(t *testing.T) {
	k, objs := readManifests(t)
	if k.Namespace != "" {
		t.Errorf("kustomization sets namespace %q; it must stay namespace-agnostic", k.Namespace)
	}
	var ds *appsv1.DaemonSet
	var cm *v1.ConfigMap
	var sa *v1.ServiceAccount
	var role *rbacv1.ClusterRole
	for _, o := range objs {
		switch o := o.(type) {
		case *appsv1.DaemonSet:
			ds = o
		case *v1.ConfigMap:
			cm = o
		case *v1.ServiceAccount:
			sa = o
		case *rbacv1.ClusterRole:
			role = o
		}
	}
	if ds == nil || cm == nil || sa == nil || role == nil {
		t.Fatalf("missing objects: DaemonSet %v ConfigMap %v ServiceAccount %v ClusterRole %v", ds != nil, cm != nil, sa != nil, role != nil)
	}
	spec := ds.Spec.Template.Spec
	if !spec.HostNetwork || spec.PriorityClassName != "system-node-critical" || spec.ServiceAccountName != sa.Name || ds.Namespace != sa.Namespace {
		t.Errorf("pod spec: hostNetwork %v priority %q serviceAccount %q/%q", spec.HostNetwork, spec.PriorityClassName, ds.Namespace, spec.ServiceAccountName)
	}
	if len(spec.Tolerations) != 1 || spec.Tolerations[0].Operator != v1.TolerationOpExists || spec.Tolerations[0].Key != "" {
		t.Errorf("tolerations %v: want one that tolerates every taint", spec.Tolerations)
	}
	if ru := ds.Spec.UpdateStrategy.RollingUpdate; ds.Spec.UpdateStrategy.Type != appsv1.RollingUpdateDaemonSetStrategyType || ru == nil || ru.MaxUnavailable.String() != "1" {
		t.Errorf("update strategy %+v", ds.Spec.UpdateStrategy)
	}
	for _, v := range spec.Volumes {
		if v.HostPath != nil {
			t.Errorf("volume %s mounts host path %s: nftproxy needs none", v.Name, v.HostPath.Path)
		}
	}
	if len(spec.Containers) != 1 {
		t.Fatalf("%d containers", len(spec.Containers))
	}
	c := spec.Containers[0]
	sc := c.SecurityContext
	if sc == nil || sc.Privileged == nil || *sc.Privileged || sc.Capabilities == nil ||
		!slices.Equal(sc.Capabilities.Add, []v1.Capability{"NET_ADMIN"}) || !slices.Equal(sc.Capabilities.Drop, []v1.Capability{"ALL"}) {
		t.Errorf("security context %+v: want unprivileged, drop ALL, add NET_ADMIN only", sc)
	}
	checkHardening(t, spec, c)
	checkSysctlInit(t, spec, c)
	if p := c.LivenessProbe; p == nil || p.HTTPGet == nil || p.HTTPGet.Path != "/livez" || p.HTTPGet.Port.IntValue() != 10256 {
		t.Errorf("liveness probe %+v: want GET /livez on 10256", c.LivenessProbe)
	}
	// The image is set only in kustomization.yaml.
	if len(k.Images) != 1 || k.Images[0].Name != c.Image || k.Images[0].NewTag == "" || strings.Contains(c.Image, ":") {
		t.Errorf("image %q in the DaemonSet, %+v in kustomization.yaml: want a bare name replaced (with its tag) by kustomization images:", c.Image, k.Images)
	}

	// The container's flags are nftproxy's, and its config file (from the
	// ConfigMap) loads without a warning.
	dir := t.TempDir()
	conf := filepath.Join(dir, "config.conf")
	if err := os.WriteFile(conf, []byte(cm.Data["config.conf"]), 0o600); err != nil {
		t.Fatal(err)
	}
	if len(c.Command) == 0 || c.Command[0] != "nftproxy" {
		t.Fatalf("command %q", c.Command)
	}
	args := make([]string, 0, len(c.Command)-1)
	for _, a := range c.Command[1:] {
		a = strings.ReplaceAll(a, "$(NODE_NAME)", "node-a")
		a = strings.ReplaceAll(a, "/var/lib/nftproxy/config.conf", conf)
		args = append(args, a)
	}
	o, srv := newOptions(), newServeOptions()
	cmd := newCommandWith(o, srv)
	if err := cmd.ParseFlags(args); err != nil {
		t.Fatalf("command %q: %v", c.Command, err)
	}
	warnings, err := applyConfigFile(cmd.Flags(), o.configFile)
	if err != nil || len(warnings) != 0 {
		t.Errorf("ConfigMap's config.conf: %v %q", err, warnings)
	}
	if err := o.complete(); err != nil || o.nodeName != "node-a" {
		t.Errorf("options: %v (node %q)", err, o.nodeName)
	}
	if srv.healthzBindAddress != "0.0.0.0:10256" {
		t.Errorf("healthz on %q, but the probe targets port 10256", srv.healthzBindAddress)
	}
	for _, m := range c.VolumeMounts {
		if strings.HasPrefix("/var/lib/nftproxy/config.conf", m.MountPath+"/") && !m.ReadOnly {
			t.Errorf("config mount %s is writable", m.MountPath)
		}
	}
}

// checkSysctlInit checks the one privileged container: it only writes the
// conntrack sysctls from the same image and configuration, and exits.
func checkSysctlInit(t *testing.T, spec v1.PodSpec, main v1.Container) {
	t.Helper()
	if len(spec.InitContainers) != 1 {
		t.Fatalf("%d init containers, want the conntrack sysctls one", len(spec.InitContainers))
	}
	c := spec.InitContainers[0]
	if c.Image != main.Image || !slices.Equal(c.Command, []string{"nftproxy", "--config=/var/lib/nftproxy/config.conf", "--set-conntrack-sysctls"}) {
		t.Errorf("init container %s: image %q command %q, want nftproxy's with --config and --set-conntrack-sysctls", c.Name, c.Image, c.Command)
	}
	if sc := c.SecurityContext; sc == nil || sc.Privileged == nil || !*sc.Privileged || sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
		t.Errorf("init container security context %+v: want privileged (for /proc/sys) with a read-only root", c.SecurityContext)
	}
	if !reflect.DeepEqual(c.VolumeMounts, main.VolumeMounts) {
		t.Errorf("init container mounts %+v, want the config as the proxy has it", c.VolumeMounts)
	}
}

// peakRSS10k is the highest RSS measured at 10,000 Services x 10 endpoints
// (433-533 MB); the memory limit must leave headroom above it.
const peakRSS10k = 533e6

// checkHardening checks the container's confinement and resources:
// no privilege escalation, the runtime's seccomp profile, a read-only root
// filesystem, requests, a memory limit with headroom over the measured
// peak (and GOMEMLIMIT following it), and no CPU limit.
func checkHardening(t *testing.T, spec v1.PodSpec, c v1.Container) {
	t.Helper()
	sc := c.SecurityContext
	if sc == nil {
		t.Fatal("no security context")
	}
	if sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
		t.Error("allowPrivilegeEscalation is not false")
	}
	if sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
		t.Error("root filesystem is not read-only")
	}
	seccomp := sc.SeccompProfile
	if seccomp == nil && spec.SecurityContext != nil {
		seccomp = spec.SecurityContext.SeccompProfile
	}
	if seccomp == nil || seccomp.Type != v1.SeccompProfileTypeRuntimeDefault {
		t.Errorf("seccomp profile %+v, want RuntimeDefault", seccomp)
	}
	req, lim := c.Resources.Requests, c.Resources.Limits
	if req.Cpu().IsZero() || req.Memory().IsZero() {
		t.Errorf("requests %v: want cpu and memory", req)
	}
	if m := lim.Memory(); m.IsZero() || float64(m.Value()) < 1.5*peakRSS10k || m.Cmp(*req.Memory()) < 0 {
		t.Errorf("memory limit %v: want at least 1.5 x the %g B peak at 10k Services, and at least the request", m, peakRSS10k)
	}
	if _, ok := lim[v1.ResourceCPU]; ok {
		t.Error("CPU limit set: a throttled proxy programs changes late")
	}
	gomemlimit := false
	for _, e := range c.Env {
		if e.Name == "GOMEMLIMIT" && e.ValueFrom != nil && e.ValueFrom.ResourceFieldRef != nil && e.ValueFrom.ResourceFieldRef.Resource == "limits.memory" {
			gomemlimit = true
		}
	}
	if !gomemlimit {
		t.Error("GOMEMLIMIT does not follow limits.memory")
	}
}
