package app

import (
	"bytes"
	"strings"
	"testing"

	"github.com/meshinject/meshinject/cmd/meshinject/app/tags"
	"github.com/meshinject/meshinject/test/testutil"
)

func TestWriteTags(t *testing.T) {
	var b bytes.Buffer
	err := writeTags(&b, []tags.Tag{
		{Tag: "default", Revision: "1-32", Namespaces: []string{"shop", "web"}, Pods: 3, Stale: []tags.StalePod{
			{Namespace: "shop", Name: "cart-7d9c", Reason: "injected by revision 1-31"},
		}},
		{Tag: "prod", Revision: "1-31", Namespaces: []string{}, Stale: []tags.StalePod{}, Note: "proxy images not compared: no ConfigMap"},
	})
	if err != nil {
		t.Fatal(err)
	}
	want := `TAG      REVISION  NAMESPACES  PODS  STALE
default  1-32      shop,web    3     1
prod     1-31      -           0     0

tag default: 1 pod needs a restart to run revision 1-32 as configured now:
  shop/cart-7d9c: injected by revision 1-31

tag prod: proxy images not compared: no ConfigMap
`
	if got := b.String(); got != want {
		t.Errorf("tag list:\n%s", testutil.LineDiff(want, got))
	}
	b.Reset()
	if err := writeTags(&b, nil); err != nil || strings.TrimSpace(b.String()) != "no revision tags" {
		t.Errorf("no tags: %q, %v", b.String(), err)
	}
}
