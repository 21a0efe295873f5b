package schemaregistry

import (
	"encoding/base64"
	"errors"
	"fmt"
	"slices"
	"strings"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/descriptorpb"
)

// protoMessage is a message declared in a Protobuf schema, with the index
// path that the Confluent wire format uses for it: its index among the
// file's top-level messages, then among its parent's nested messages, and
// so on. Map fields' synthetic entry messages count, as in descriptors.
type protoMessage struct {
	name string // full name
	path []int
}

// protoMessages lists the messages a registered Protobuf schema declares.
// The schema is .proto source (what registries store and return by
// default) or a base64 serialized FileDescriptorProto (what some
// serializers register and registries return with format=serialized).
//
// It reads only what decides the messages' names and indexes: the package,
// message declarations and their nesting, map fields and groups. It is not a
// validating parser; the registry validated the schema when it was
// registered.
func protoMessages(schema string) ([]protoMessage, error) {
	if msgs, ok := serializedMessages(schema); ok {
		return msgs, nil
	}
	s := &protoScanner{src: schema}
	if err := s.file(); err != nil {
		return nil, fmt.Errorf("read Protobuf schema: %w", err)
	}
	return s.msgs, nil
}

func serializedMessages(schema string) ([]protoMessage, bool) {
	raw, err := base64.StdEncoding.DecodeString(strings.TrimSpace(schema))
	if err != nil {
		return nil, false
	}
	var fd descriptorpb.FileDescriptorProto
	if proto.Unmarshal(raw, &fd) != nil || len(fd.GetMessageType()) == 0 {
		return nil, false
	}
	var msgs []protoMessage
	var walk func(prefix string, path []int, ms []*descriptorpb.DescriptorProto)
	walk = func(prefix string, path []int, ms []*descriptorpb.DescriptorProto) {
		for i, m := range ms {
			p := append(slices.Clone(path), i)
			name := prefix + m.GetName()
			msgs = append(msgs, protoMessage{name, p})
			walk(name+".", p, m.GetNestedType())
		}
	}
	prefix := ""
	if fd.GetPackage() != "" {
		prefix = fd.GetPackage() + "."
	}
	walk(prefix, nil, fd.GetMessageType())
	return msgs, true
}

// protoScanner reads .proto source token by token.
type protoScanner struct {
	src  string
	pos  int
	tok  string // the current token; "" at the end
	msgs []protoMessage
	pkg  string
}

var errEOF = errors.New("unexpected end of schema")

// next moves to the next token, skipping white space and comments.
// Strings are one token, quotes included.
func (s *protoScanner) next() error {
	for s.pos < len(s.src) {
		c := s.src[s.pos]
		switch {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v':
			s.pos++
		case strings.HasPrefix(s.src[s.pos:], "//"):
			if i := strings.IndexByte(s.src[s.pos:], '\n'); i >= 0 {
				s.pos += i + 1
			} else {
				s.pos = len(s.src)
			}
		case strings.HasPrefix(s.src[s.pos:], "/*"):
			i := strings.Index(s.src[s.pos+2:], "*/")
			if i < 0 {
				return errors.New("unterminated comment")
			}
			s.pos += i + 4
		default:
			return s.token()
		}
	}
	s.tok = ""
	return nil
}

func (s *protoScanner) token() error {
	start := s.pos
	c := s.src[s.pos]
	switch {
	case c == '"' || c == '\'':
		s.pos++
		for s.pos < len(s.src) && s.src[s.pos] != c {
			if s.src[s.pos] == '\\' {
				s.pos++
			}
			if s.pos < len(s.src) && s.src[s.pos] == '\n' {
				return errors.New("newline in string")
			}
			s.pos++
		}
		if s.pos >= len(s.src) {
			return errors.New("unterminated string")
		}
		s.pos++
	case isWordByte(c):
		for s.pos < len(s.src) && isWordByte(s.src[s.pos]) {
			s.pos++
		}
	default:
		s.pos++
	}
	s.tok = s.src[start:s.pos]
	return nil
}

func isWordByte(c byte) bool {
	return c == '_' || c == '.' || c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= 0x80
}

func (s *protoScanner) expect(tok string) error {
	if s.tok != tok {
		if s.tok == "" {
			return fmt.Errorf("%w: want %q", errEOF, tok)
		}
		return fmt.Errorf("want %q, got %q at byte %d", tok, s.tok, s.pos-len(s.tok))
	}
	return s.next()
}

// skipStatement skips to the end of a statement: past its ";" or past its
// block, brackets balanced.
func (s *protoScanner) skipStatement() error {
	depth := 0
	for {
		switch s.tok {
		case "":
			return errEOF
		case "{", "[", "(", "<":
			depth++
		case "}", "]", ")", ">":
			depth--
			if depth < 0 {
				return fmt.Errorf("unbalanced %q at byte %d", s.tok, s.pos-1)
			}
			if depth == 0 && s.tok == "}" {
				return s.next()
			}
		case ";":
			if depth == 0 {
				return s.next()
			}
		}
		if err := s.next(); err != nil {
			return err
		}
	}
}

func (s *protoScanner) file() error {
	if err := s.next(); err != nil {
		return err
	}
	top := 0
	for s.tok != "" {
		switch s.tok {
		case "package":
			if err := s.next(); err != nil {
				return err
			}
			s.pkg = s.tok
			if err := s.next(); err != nil {
				return err
			}
			if err := s.expect(";"); err != nil {
				return err
			}
		case "message":
			if err := s.message(s.prefix(""), []int{top}); err != nil {
				return err
			}
			top++
		case "extend":
			n, err := s.extend(s.prefix(""), nil, top)
			if err != nil {
				return err
			}
			top += n
		case ";":
			if err := s.next(); err != nil {
				return err
			}
		default: // syntax, edition, import, option, enum, service
			if err := s.skipStatement(); err != nil {
				return err
			}
		}
	}
	return nil
}

func (s *protoScanner) prefix(parent string) string {
	if parent != "" {
		return parent + "."
	}
	if s.pkg != "" {
		return s.pkg + "."
	}
	return ""
}

// message reads "message Name { ... }", the current token being "message".
func (s *protoScanner) message(prefix string, path []int) error {
	if err := s.next(); err != nil {
		return err
	}
	return s.declare(prefix+s.tok, path, true)
}

// declare records a message and reads its body, the current token being
// its name (and, when named is false, the current token being past it,
// at the "=" of a group).
func (s *protoScanner) declare(name string, path []int, named bool) error {
	s.msgs = append(s.msgs, protoMessage{name, slices.Clone(path)})
	if named {
		if err := s.next(); err != nil {
			return err
		}
	}
	for s.tok != "{" { // a group's "= 3 [options]"
		if s.tok == "" {
			return errEOF
		}
		if err := s.next(); err != nil {
			return err
		}
	}
	if err := s.next(); err != nil {
		return err
	}
	return s.body(name, path)
}

// body reads a message body up to and past its "}".
func (s *protoScanner) body(name string, path []int) error {
	nested := 0
	child := func() []int { return append(slices.Clone(path), nested) }
	for {
		switch s.tok {
		case "":
			return errEOF
		case "}":
			return s.next()
		case ";":
			if err := s.next(); err != nil {
				return err
			}
		case "message":
			if err := s.message(name+".", child()); err != nil {
				return err
			}
			nested++
		case "extend":
			n, err := s.extend(name+".", path, nested)
			if err != nil {
				return err
			}
			nested += n
		case "oneof":
			n, err := s.oneof(name, path, nested)
			if err != nil {
				return err
			}
			nested += n
		case "map":
			entry, err := s.mapField()
			if err != nil {
				return err
			}
			s.msgs = append(s.msgs, protoMessage{name + "." + entry, child()})
			nested++
		case "enum", "option", "reserved", "extensions":
			if err := s.skipStatement(); err != nil {
				return err
			}
		default:
			isGroup, err := s.field(name+".", child())
			if err != nil {
				return err
			}
			if isGroup {
				nested++
			}
		}
	}
}

// field reads a field, or a group, which declares a message named prefix
// + its name, with the path given.
func (s *protoScanner) field(prefix string, path []int) (isGroup bool, err error) {
	for i := 0; i < 3 && s.tok != ""; i++ { // [label] type name
		if s.tok == "group" {
			if err := s.next(); err != nil {
				return false, err
			}
			name := s.tok
			if err := s.next(); err != nil {
				return false, err
			}
			return true, s.declare(prefix+name, path, false)
		}
		if s.tok == "=" || s.tok == ";" {
			break
		}
		if err := s.next(); err != nil {
			return false, err
		}
	}
	return false, s.skipStatement()
}

// mapField reads "map<K, V> name = N [...];" and returns the name of its
// entry message, as protoc makes it: the field name in CamelCase + "Entry".
func (s *protoScanner) mapField() (string, error) {
	for s.tok != ">" {
		if s.tok == "" {
			return "", errEOF
		}
		if err := s.next(); err != nil {
			return "", err
		}
	}
	if err := s.next(); err != nil {
		return "", err
	}
	name := s.tok
	if err := s.skipStatement(); err != nil {
		return "", err
	}
	var b strings.Builder
	up := true
	for i := 0; i < len(name); i++ {
		c := name[i]
		switch {
		case c == '_':
			up = true
		case up && c >= 'a' && c <= 'z':
			b.WriteByte(c - 'a' + 'A')
			up = false
		default:
			b.WriteByte(c)
			up = false
		}
	}
	return b.String() + "Entry", nil
}

// oneof reads a oneof block, whose groups declare messages in the
// enclosing message; it returns how many.
func (s *protoScanner) oneof(parent string, path []int, nested int) (int, error) {
	for s.tok != "{" {
		if s.tok == "" {
			return 0, errEOF
		}
		if err := s.next(); err != nil {
			return 0, err
		}
	}
	if err := s.next(); err != nil {
		return 0, err
	}
	n := 0
	for {
		switch s.tok {
		case "":
			return 0, errEOF
		case "}":
			return n, s.next()
		case ";":
			if err := s.next(); err != nil {
				return 0, err
			}
		case "option":
			if err := s.skipStatement(); err != nil {
				return 0, err
			}
		default:
			isGroup, err := s.field(parent+".", append(slices.Clone(path), nested+n))
			if err != nil {
				return 0, err
			}
			if isGroup {
				n++
			}
		}
	}
}

// extend reads an extend block, whose groups declare messages in the
// enclosing scope (prefix, path) from index first; it returns how many.
func (s *protoScanner) extend(prefix string, path []int, first int) (int, error) {
	for s.tok != "{" {
		if s.tok == "" {
			return 0, errEOF
		}
		if err := s.next(); err != nil {
			return 0, err
		}
	}
	if err := s.next(); err != nil {
		return 0, err
	}
	n := 0
	for {
		switch s.tok {
		case "":
			return 0, errEOF
		case "}":
			return n, s.next()
		case ";":
			if err := s.next(); err != nil {
				return 0, err
			}
		default:
			isGroup, err := s.field(prefix, append(slices.Clone(path), first+n))
			if err != nil {
				return 0, err
			}
			if isGroup {
				n++
			}
		}
	}
}
