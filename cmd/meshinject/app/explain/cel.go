package explain

import (
	"encoding/json"
	"fmt"

	"github.com/google/cel-go/cel"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
)

// celEnv declares the variables a webhook's matchConditions see on pod
// creation: object (the pod), oldObject (null) and request.
var celEnv, celEnvErr = cel.NewEnv(
	cel.Variable("object", cel.DynType),
	cel.Variable("oldObject", cel.DynType),
	cel.Variable("request", cel.DynType),
)

// matchConditions evaluates an entry's matchConditions on pod as the API
// server does on CREATE: all must be true. It names the first that is
// false, or that cannot be evaluated.
func matchConditions(conds []admissionregistrationv1.MatchCondition, pod *corev1.Pod, ns string) (bool, string) {
	if len(conds) == 0 {
		return true, ""
	}
	if celEnvErr != nil {
		return false, celEnvErr.Error()
	}
	obj, err := podObject(pod, ns)
	if err != nil {
		return false, err.Error()
	}
	vars := map[string]any{"object": obj, "oldObject": nil, "request": map[string]any{"operation": "CREATE", "namespace": ns}}
	for _, c := range conds {
		ast, iss := celEnv.Compile(c.Expression)
		if iss.Err() != nil {
			return false, fmt.Sprintf("match condition %s: %v", c.Name, iss.Err())
		}
		prg, err := celEnv.Program(ast)
		if err != nil {
			return false, fmt.Sprintf("match condition %s: %v", c.Name, err)
		}
		out, _, err := prg.Eval(vars)
		if err != nil {
			return false, fmt.Sprintf("match condition %s: %v", c.Name, err)
		}
		if ok, isBool := out.Value().(bool); !isBool || !ok {
			return false, fmt.Sprintf("match condition %s is false (%s)", c.Name, c.Expression)
		}
	}
	return true, ""
}

// podObject is pod as the API server's CEL sees it: its JSON tree.
func podObject(pod *corev1.Pod, ns string) (map[string]any, error) {
	p := pod.DeepCopy()
	p.APIVersion, p.Kind = "v1", "Pod"
	if p.Namespace == "" {
		p.Namespace = ns
	}
	b, err := json.Marshal(p)
	if err != nil {
		return nil, err
	}
	var m map[string]any
	return m, json.Unmarshal(b, &m)
}
