package main

import (
	"bytes"
	"strings"
	"testing"
)

// TestDeadLetter runs the program against the embedded cluster and checks
// that each bad payment reached the dead-letter topic with the original key
// and value and the Connect headers naming its source and error, that the
// good payments around them were processed, and that the stream with the
// middleware ran on and committed everything while the one without crashed
// before the first bad payment.
func TestDeadLetter(t *testing.T) {
	t.Setenv("KAFKA_BROKERS", "")
	var out bytes.Buffer
	if err := run(&out); err != nil {
		t.Fatalf("run: %v\noutput:\n%s", err, out.String())
	}
	got := out.String()
	for _, want := range []string{
		"processed payment 1 (10.50) at offset 0\n",
		"processed payment 2 (20.00) at offset 1\n",
		"processed payment 6 (60.25) at offset 5\n",
		`stream "payments" is running (last crash: <nil>)`,
		`stream "audit", without the middleware, is crashed: payment 3: negative amount`,

		`dead letter payments-dlq@0: key=payment-3 value={"id": 3, "amount": -5}
  __connect.errors.topic: payments
  __connect.errors.partition: 0
  __connect.errors.offset: 2
  __connect.errors.exception.message: payment 3: negative amount
  __connect.errors.exception.class.name: *main.ValidationError
`,
		`dead letter payments-dlq@1: key=payment-4 value={"id": 4, "amount": 4
  __connect.errors.topic: payments
  __connect.errors.partition: 0
  __connect.errors.offset: 3
  __connect.errors.exception.message: kstream: decode record`,
		`codec: JSON decode into main.Payment: unexpected end of JSON input
  __connect.errors.exception.class.name: *json.SyntaxError
`,
		`dead letter payments-dlq@2: key=payment-5 value={"id": 5, "amount": 0}
  __connect.errors.topic: payments
  __connect.errors.partition: 0
  __connect.errors.offset: 4
  __connect.errors.exception.message: kstream: panic: payment 5: division by zero amount
  __connect.errors.exception.class.name: *kstream.PanicError
`,
		`committed offset of group "payments-service": 6 `,
		`committed offset of group "audit": 2 `,
	} {
		if !strings.Contains(got, want) {
			t.Errorf("output lacks %q", want)
		}
	}
	for _, id := range []string{"3", "4", "5"} {
		if strings.Contains(got, "processed payment "+id) {
			t.Errorf("bad payment %s was processed", id)
		}
	}
	if t.Failed() {
		t.Logf("output:\n%s", got)
	}
}
