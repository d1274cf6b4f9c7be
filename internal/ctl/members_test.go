package ctl

import (
	"encoding/json"
	"strings"
	"testing"
)

// The progress line names every member of the change, a bar and the
// copied bytes of a member in its initial sync, and a failure.
func TestMembershipProgress(t *testing.T) {
	var mc MembershipChange
	if err := json.Unmarshal([]byte(`{"fromMembers":3,"toMembers":5,"members":[{"name":"m3","state":"SECONDARY"},
		{"name":"m4","state":"INITIAL_SYNC","initialSync":{"bytesCopied":500000,"bytesTotal":1000000,"documentsCopied":42,"estimatedRemainingMillis":2000}}]}`), &mc); err != nil {
		t.Fatal(err)
	}
	got := mc.progress()
	for _, want := range []string{"3→5", "m3 SECONDARY", "m4 INITIAL_SYNC [#####.....] 50% 0.5/1.0 MB 42 docs ~2s"} {
		if !strings.Contains(got, want) {
			t.Errorf("progress %q lacks %q", got, want)
		}
	}
	mc.Error = "boom"
	if !strings.Contains(mc.progress(), "failed: boom") {
		t.Errorf("progress %q lacks the failure", mc.progress())
	}
	var none *MembershipChange
	if none.progress() != "" {
		t.Error("no change, yet a progress line")
	}
}
