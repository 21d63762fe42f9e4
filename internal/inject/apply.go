package inject

import (
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strconv"

	"istio.io/api/annotation"

	"k8s.io/utils/ptr"

	corev1 "k8s.io/api/core/v1"

	"github.com/meshinject/meshinject/internal/inject/podmerge"
	"github.com/meshinject/meshinject/internal/jsontree"
)

// Status is the sidecar.istio.io/status annotation: what the templates
// added, in Istio's format.
type Status struct {
	InitContainers   []string `json:"initContainers"`
	Containers       []string `json:"containers"`
	Volumes          []string `json:"volumes"`
	ImagePullSecrets []string `json:"imagePullSecrets"`
	Revision         string   `json:"revision"`
}

// overrides is the proxy.istio.io/overrides annotation: the user's own
// definitions of containers that a template also defines.
type overrides struct {
	Containers     []corev1.Container `json:"containers,omitempty"`
	InitContainers []corev1.Container `json:"initContainers,omitempty"`
}

// apply renders the templates, merges them into pod and post-processes it.
// previous are the containers an earlier injection added, as the pod
// carried them (see keepPrevious).
func (e *Engine) apply(pod *corev1.Pod, s *settings, names []string, previous []corev1.Container, warnings *[]string) error {
	in := &injection{e: e, pod: pod, s: s, names: names, warnings: warnings, previous: previous,
		rec: newRecord(pod), status: Status{Revision: s.Revision}}
	// Render every template and note what they add.
	if err := in.render(); err != nil {
		return err
	}
	in.noteStatus()
	// Take the user's overrides out, merge the templates, keep what the
	// user added to a previous injection, fold a second istio-proxy into
	// the native one, and put the user's overrides back.
	in.userProxy = findProxy(in.pod).DeepCopy()
	in.ov = takeOverrides(in.pod, &in.status, in.rec)
	if err := in.merge(); err != nil {
		return err
	}
	if err := in.keepPrevious(); err != nil {
		return err
	}
	foldProxy(in.pod, &in.status)
	if err := applyOverrides(in.pod, &in.ov); err != nil {
		return err
	}
	return in.postProcess()
}

// postProcess finishes a merged injection: istio-init as the user's
// istio-proxy asks, the cluster and network variables, Prometheus
// scraping, the application's probes, the status annotations, the
// containers' order, and the record uninject reads.
func (in *injection) postProcess() error {
	adjustInitUser(in.pod, in.userProxy, in.s.InterceptionMode == "TPROXY")
	overwriteClusterEnv(in.pod, in.s.clusterEnv)
	if err := in.e.prometheusMerge(in.pod, in.s); err != nil {
		return err
	}
	securePrometheusPort(in.pod)
	if err := rewriteProbes(in.pod, in.s, in.rec, in.warnings); err != nil {
		return err
	}
	if err := in.annotate(); err != nil {
		return err
	}
	order(in.pod, in.s.Hold)
	return in.rec.finish(in.pod)
}

// injection is the state apply's steps share.
type injection struct {
	e        *Engine
	pod      *corev1.Pod
	s        *settings
	names    []string
	warnings *[]string
	rec      *record
	// patches are the rendered templates, in names' order.
	patches []*rendered
	status  Status
	// userProxy is the user's own istio-proxy container, if any, before
	// injection; ov the per-container overrides taken out of the pod.
	userProxy *corev1.Container
	ov        overrides
	// previous are the containers an earlier injection added.
	previous []corev1.Container
}

func (in *injection) render() error {
	data := in.e.templateData(in.pod, in.s)
	in.patches = make([]*rendered, len(in.names))
	for i, n := range in.names {
		p, err := in.e.render(n, data)
		if err != nil {
			return err
		}
		in.patches[i] = p
	}
	return nil
}

func (in *injection) noteStatus() {
	for _, p := range in.patches {
		spec, _ := p.tree["spec"].(map[string]any)
		in.status.InitContainers = appendNames(in.status.InitContainers, spec["initContainers"])
		in.status.Containers = appendNames(in.status.Containers, spec["containers"])
		in.status.Volumes = appendNames(in.status.Volumes, spec["volumes"])
		in.status.ImagePullSecrets = appendNames(in.status.ImagePullSecrets, spec["imagePullSecrets"])
	}
}

func (in *injection) merge() error {
	for i, p := range in.patches {
		if p.additive && podmerge.Add(in.pod, p.pod) {
			continue
		}
		if err := podmerge.Merge(in.pod, p.tree, in.rec.touch); err != nil {
			return fmt.Errorf("template %s: %w", in.names[i], err)
		}
	}
	return nil
}

// annotate writes the status and overrides annotations and the config's
// injectedAnnotations.
func (in *injection) annotate() error {
	b, err := json.Marshal(in.status)
	if err != nil {
		return err
	}
	if in.pod.Annotations == nil {
		in.pod.Annotations = map[string]string{}
	}
	in.pod.Annotations[AnnotationStatus] = string(b)
	if len(in.ov.Containers)+len(in.ov.InitContainers) > 0 {
		b, err := json.Marshal(in.ov)
		if err != nil {
			return err
		}
		in.pod.Annotations[annotationOverrides] = string(b)
	}
	maps.Copy(in.pod.Annotations, in.e.cfg.Injection.InjectedAnnotations)
	return nil
}

func (r *record) position(key string, i int) {
	if r.Positions == nil {
		r.Positions = map[string]int{}
	}
	r.Positions[key] = i
}

// takeOverrides remembers the user's own definitions of containers the
// templates define, as proxy.istio.io/overrides records them. A user's
// istio-proxy in containers customises a native sidecar too: it is moved to
// the init containers the template puts the proxy in, so the pod never has
// two containers of one name.
func takeOverrides(pod *corev1.Pod, status *Status, rec *record) overrides {
	var ov overrides
	native := slices.Contains(status.InitContainers, ProxyContainerName) && !slices.Contains(status.Containers, ProxyContainerName)
	for i, c := range pod.Spec.Containers {
		switch {
		case slices.Contains(status.Containers, c.Name):
			ov.Containers = append(ov.Containers, recorded(c))
			rec.position("containers/"+c.Name, i)
		case native && c.Name == ProxyContainerName:
			// Recorded where the proxy ends up, as Istio records it; the
			// position says it came from containers (for uninject).
			ov.InitContainers = append(ov.InitContainers, recorded(c))
			rec.position("containers/"+c.Name, i)
		}
	}
	for i, c := range pod.Spec.InitContainers {
		if slices.Contains(status.InitContainers, c.Name) {
			ov.InitContainers = append(ov.InitContainers, recorded(c))
			rec.position("initContainers/"+c.Name, i)
		}
	}
	if i := containerIndex(pod.Spec.Containers, ProxyContainerName); i >= 0 && native {
		pod.Spec.InitContainers = append(pod.Spec.InitContainers, pod.Spec.Containers[i])
		pod.Spec.Containers = slices.Delete(pod.Spec.Containers, i, i+1)
	}
	return ov
}

// appendNames adds the names of a patch list's items, skipping deletions.
func appendNames(names []string, list any) []string {
	items, _ := list.([]any)
	for _, it := range items {
		m, ok := it.(map[string]any)
		if !ok || m["$patch"] != nil {
			continue
		}
		if n, ok := m["name"].(string); ok && !slices.Contains(names, n) {
			names = append(names, n)
		}
	}
	return names
}

// applyOverrides merges the user's own definition of each container a
// template also defines back on top of the template's, so a gateway
// Deployment's settings win; an image "auto" is dropped first so the
// template's image stays.
func applyOverrides(pod *corev1.Pod, ov *overrides) error {
	apply := func(list []corev1.Container, users []corev1.Container, field string) error {
		for _, u := range users {
			idx := containerIndex(list, u.Name)
			if idx < 0 && u.Name == ProxyContainerName {
				// moved to the init containers for a native sidecar
				list, field = pod.Spec.InitContainers, "init container"
				idx = containerIndex(list, u.Name)
			}
			if idx < 0 {
				continue
			}
			t, err := jsontree.Value(u)
			if err != nil {
				return err
			}
			merged, err := mergeContainer(list[idx], t.(map[string]any))
			if err != nil {
				return fmt.Errorf("merge %s %s over the template: %w", field, u.Name, err)
			}
			list[idx] = merged
		}
		return nil
	}
	if err := apply(pod.Spec.Containers, ov.Containers, "container"); err != nil {
		return err
	}
	return apply(pod.Spec.InitContainers, ov.InitContainers, "init container")
}

func containerIndex(list []corev1.Container, name string) int {
	for i := range list {
		if list[i].Name == name {
			return i
		}
	}
	return -1
}

// findProxy returns the istio-proxy container, native or classic.
func findProxy(pod *corev1.Pod) *corev1.Container {
	if i := containerIndex(pod.Spec.Containers, ProxyContainerName); i >= 0 {
		return &pod.Spec.Containers[i]
	}
	if i := containerIndex(pod.Spec.InitContainers, ProxyContainerName); i >= 0 {
		return &pod.Spec.InitContainers[i]
	}
	return nil
}

// initNames are the traffic-setup init containers the sidecar template adds.
var initNames = map[string]bool{"istio-init": true, "istio-validation": true}

// order puts the injected containers where Istio puts them. Native:
// init containers are istio-init, istio-proxy, then the rest (so the app's
// init containers run inside the mesh). Classic: istio-init runs after the
// user's init containers; istio-proxy is last in containers, or first when
// the application is held until the proxy starts.
func order(pod *corev1.Pod, hold bool) {
	inits := pod.Spec.InitContainers
	if containerIndex(inits, ProxyContainerName) >= 0 {
		out := make([]corev1.Container, 0, len(inits))
		for _, c := range inits {
			if initNames[c.Name] {
				out = append(out, c)
			}
		}
		for _, c := range inits {
			if c.Name == ProxyContainerName {
				out = append(out, c)
			}
		}
		for _, c := range inits {
			if !initNames[c.Name] && c.Name != ProxyContainerName {
				out = append(out, c)
			}
		}
		pod.Spec.InitContainers = out
		return
	}
	pod.Spec.InitContainers = moveTo(inits, func(c *corev1.Container) bool { return initNames[c.Name] }, false)
	pod.Spec.Containers = moveTo(pod.Spec.Containers, func(c *corev1.Container) bool { return c.Name == ProxyContainerName }, hold)
}

// moveTo moves the containers matching pick to the front or the back,
// keeping the relative order of both groups.
func moveTo(list []corev1.Container, pick func(*corev1.Container) bool, front bool) []corev1.Container {
	// In place: the picked few are copied out, the rest close up.
	var picked []corev1.Container
	w := 0
	for i := range list {
		if pick(&list[i]) {
			picked = append(picked, list[i])
			continue
		}
		list[w] = list[i]
		w++
	}
	if len(picked) == 0 {
		return list
	}
	if front {
		copy(list[len(picked):], list[:w])
		copy(list, picked)
	} else {
		copy(list[w:], picked)
	}
	return list
}

// foldProxy merges an istio-proxy that one template adds to containers into
// the native istio-proxy another template put in the init containers, so a
// later template can customise the proxy whichever list holds it.
func foldProxy(pod *corev1.Pod, status *Status) {
	ci := containerIndex(pod.Spec.Containers, ProxyContainerName)
	ii := containerIndex(pod.Spec.InitContainers, ProxyContainerName)
	if ci < 0 || ii < 0 {
		return
	}
	if t, err := jsontree.Value(pod.Spec.Containers[ci]); err == nil {
		if merged, err := mergeContainer(pod.Spec.InitContainers[ii], t.(map[string]any)); err == nil {
			pod.Spec.InitContainers[ii] = merged
		}
	}
	pod.Spec.Containers = slices.Delete(pod.Spec.Containers, ci, ci+1)
	status.Containers = slices.DeleteFunc(status.Containers, func(n string) bool { return n == ProxyContainerName })
	if len(status.Containers) == 0 {
		status.Containers = nil
	}
}

// adjustInitUser makes traffic setup follow the user id of a user's own
// istio-proxy container, as Istio does: istio-init's "-u" becomes that
// runAsUser (unless 0), istio-validation runs as that user and group, and
// in TPROXY mode the proxy keeps running as root.
func adjustInitUser(pod *corev1.Pod, user *corev1.Container, tproxy bool) {
	if user == nil || user.SecurityContext == nil || (user.SecurityContext.RunAsUser == nil && user.SecurityContext.RunAsGroup == nil) {
		return
	}
	usc := user.SecurityContext
	var init *corev1.Container
	for name := range initNames {
		if i := containerIndex(pod.Spec.InitContainers, name); i >= 0 {
			init = &pod.Spec.InitContainers[i]
		}
	}
	if init == nil {
		return
	}
	if !tproxy {
		tproxy = pod.Annotations[annotation.SidecarInterceptionMode.Name] == "TPROXY"
	}
	if tproxy && usc.RunAsUser != nil {
		if p := findProxy(pod); p != nil && p.SecurityContext != nil {
			p.SecurityContext.RunAsUser = ptr.To[int64](0)
		}
	}
	if !tproxy && init.Name == "istio-validation" {
		if init.SecurityContext == nil {
			init.SecurityContext = &corev1.SecurityContext{}
		}
		if usc.RunAsUser != nil {
			init.SecurityContext.RunAsUser = ptr.To(*usc.RunAsUser)
		}
		if usc.RunAsGroup != nil {
			init.SecurityContext.RunAsGroup = ptr.To(*usc.RunAsGroup)
		}
	}
	if usc.RunAsUser == nil || *usc.RunAsUser == 0 {
		return
	}
	if i := slices.Index(init.Args, "-u"); i >= 0 && i+1 < len(init.Args) {
		init.Args[i+1] = strconv.FormatInt(*usc.RunAsUser, 10)
	}
}

// recorded is a user's container as proxy.istio.io/overrides records it:
// without image "auto", as Istio records it (uninject puts "auto" back).
func recorded(c corev1.Container) corev1.Container {
	if c.Image == autoImage {
		c.Image = ""
	}
	return c
}

// autoImage is the image a user's container names to have injection fill
// in the proxy image.
const autoImage = "auto"

// recomputedEnv are the proxy variables apply's steps after the merge
// write.
var recomputedEnv = map[string]bool{"ISTIO_KUBE_APP_PROBERS": true, "ISTIO_PROMETHEUS_ANNOTATIONS": true}

// injectedContainers are the containers and init containers of pod that
// its status annotation says an injection added.
func injectedContainers(pod *corev1.Pod) []corev1.Container {
	var st Status
	if err := json.Unmarshal([]byte(pod.Annotations[AnnotationStatus]), &st); err != nil {
		return nil
	}
	var out []corev1.Container
	for _, list := range []struct {
		names []string
		have  []corev1.Container
	}{{st.Containers, pod.Spec.Containers}, {st.InitContainers, pod.Spec.InitContainers}} {
		// A set, so a status naming many containers costs one pass.
		names := make(map[string]bool, len(list.names))
		for _, n := range list.names {
			names[n] = true
		}
		for i := range list.have {
			if names[list.have[i].Name] {
				out = append(out, *list.have[i].DeepCopy())
			}
		}
	}
	return out
}

// keepPrevious merges each container the templates wrote over the same
// container of the previous injection, as Istio merges its templates over
// the pod it re-injects: the templates' fields win, and what the user added
// to the injected container since (an environment variable, a field the
// templates do not set) stays.
func (in *injection) keepPrevious() error {
	if len(in.previous) == 0 {
		return nil
	}
	// The previous containers by name, in order: one pass over the pod's.
	byName := make(map[string][]*corev1.Container, len(in.previous))
	for i := range in.previous {
		old := &in.previous[i]
		// Later steps write these again from the app's probes and
		// annotations, which removing the previous injection restored.
		old.Env = slices.DeleteFunc(old.Env, func(v corev1.EnvVar) bool { return recomputedEnv[v.Name] })
		byName[old.Name] = append(byName[old.Name], old)
	}
	for _, list := range [][]corev1.Container{in.pod.Spec.Containers, in.pod.Spec.InitContainers} {
		for j := range list {
			for _, old := range byName[list[j].Name] {
				tree, err := jsontree.Tree(&list[j])
				if err != nil {
					return fmt.Errorf("re-inject %s: %w", old.Name, err)
				}
				merged, err := mergeContainer(*old, tree)
				if err != nil {
					return fmt.Errorf("re-inject %s: %w", old.Name, err)
				}
				list[j] = merged
			}
		}
	}
	return nil
}
