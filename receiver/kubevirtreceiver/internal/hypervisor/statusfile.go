package hypervisor

import (
	"encoding/xml"
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"

	"libvirt.org/go/libvirtxml"
)

// A status file is ~9 KB, of which the <domain> is the last ~1.5 KB: before it come
// QEMU's capability flags and the driver's private state, which encoding/xml would
// tokenize only to throw away (three quarters of a full decode's time and allocations).
// detectStatusFile steps over them with a byte scanner that accepts a plain subset of
// XML, hands the <domain> to encoding/xml and libvirtxml as the full decode would, and
// checks that only </domstatus> follows it. Whatever the scanner does not accept, it
// leaves to the full decode: it never decides that a document is malformed, so it
// needs to be right only about the documents it accepts. FuzzDetectFastEqualsFull
// checks that Detect and detectFull agree, error messages included.
//
// The scanner accepts only what encoding/xml reads without error and without anything
// that could change how the <domain> inside is decoded:
//   - before the root: spaces, tabs, newlines and comments (no declaration, no DOCTYPE,
//     no processing instruction, no text);
//   - the root <domstatus> with attributes, none of them xmlns (a namespace declared on
//     the root would apply inside the <domain>);
//   - inside it, up to its first <domain> child: elements whose names are ASCII without
//     a colon (no namespaces), whose attributes are quoted and hold neither '<' nor '&',
//     text without '&' or ']', comments; no carriage return anywhere (encoding/xml
//     rewrites it), no character outside XML's range, only valid UTF-8;
//   - after that <domain>: text, comments and </domstatus>. A second <domain> (the full
//     decode decodes both into one value) is left to the full decode.
//
// What comes after </domstatus> is not read, as the full decode does not read it.

// statusRoot is what the <domain> is decoded inside: encoding/xml counts open elements
// against its nesting limit, and the full decode has <domstatus> open around it.
const statusRoot = "<domstatus>"

// detectStatusFile is Detect's fast path for status files. ok is false when doc is not
// a status file the scanner accepts; det and err are then meaningless.
func detectStatusFile(doc string) (det Detection, ok bool, err error) {
	start, ok := domainStart(doc)
	if !ok {
		return Detection{}, false, nil
	}
	dec := xml.NewDecoder(strings.NewReader(statusRoot + doc[start:]))
	var dom libvirtxml.Domain
	err = decodeDomain(dec, &dom)
	if err != nil {
		// The full decode fails at the same token; only its line count started earlier.
		var syntax *xml.SyntaxError
		if errors.As(err, &syntax) {
			syntax.Line += strings.Count(doc[:start], "\n")
		}
		return Detection{Type: Unknown}, true, fmt.Errorf("domain XML: %w", err)
	}
	end := start + int(dec.InputOffset()) - len(statusRoot)
	if !statusEnds(doc, end) {
		return Detection{}, false, nil
	}
	return Detection{Type: FromDomainType(dom.Type), DomainType: dom.Type}, true, nil
}

// decodeDomain decodes the <domain> that follows statusRoot in dec into dom.
func decodeDomain(dec *xml.Decoder, dom *libvirtxml.Domain) error {
	if _, err := dec.Token(); err != nil { // statusRoot
		return err
	}
	tok, err := dec.Token()
	if err != nil {
		return err
	}
	// domainStart saw "<domain" and a byte that ends a name, so this is its start tag.
	se, ok := tok.(xml.StartElement)
	if !ok {
		return fmt.Errorf("hypervisor: %T where the scanner found <domain>", tok)
	}
	return dec.DecodeElement(dom, &se)
}

// maxScanDepth bounds the elements open inside <domstatus> while scanning; libvirt
// nests them two deep. Deeper documents go to the full decode.
const maxScanDepth = 16

// domainStart returns the offset of the first <domain> child of doc's <domstatus> root,
// or false if doc is not in the subset the scanner accepts (see above).
func domainStart(doc string) (int, bool) {
	s := scanner{doc: doc}
	if !s.prolog() || !s.startTag("domstatus") {
		return 0, false
	}
	var open [maxScanDepth]string
	depth := 0
	for {
		if !s.text() {
			return 0, false
		}
		switch {
		case s.has("<!--"):
			if !s.comment() {
				return 0, false
			}
		case s.has("</"):
			s.i += 2
			name, ok := s.name()
			if !ok || depth == 0 || name != open[depth-1] || !s.endTagRest() {
				return 0, false
			}
			depth--
		default: // s.text stopped at '<'
			at := s.i
			s.i++
			name, ok := s.name()
			if !ok {
				return 0, false
			}
			if depth == 0 && name == "domain" {
				return at, true
			}
			empty, ok := s.attrs()
			if !ok {
				return 0, false
			}
			if !empty {
				if depth == maxScanDepth {
					return 0, false
				}
				open[depth] = name
				depth++
			}
		}
	}
}

// statusEnds reports whether what follows the <domain> ending at offset end is only
// text and comments up to </domstatus>.
func statusEnds(doc string, end int) bool {
	s := scanner{doc: doc, i: end}
	for {
		if !s.text() {
			return false
		}
		switch {
		case s.has("<!--"):
			if !s.comment() {
				return false
			}
		case s.has("</"):
			s.i += 2
			name, ok := s.name()
			return ok && name == "domstatus" && s.endTagRest()
		default:
			return false
		}
	}
}

// scanner reads doc from offset i. Each method advances past what it accepts and
// returns false (leaving i anywhere) on anything outside the subset.
type scanner struct {
	doc string
	i   int
}

func (s *scanner) has(prefix string) bool { return strings.HasPrefix(s.doc[s.i:], prefix) }

// space skips XML white space other than '\r'.
func (s *scanner) space() {
	for s.i < len(s.doc) && (s.doc[s.i] == ' ' || s.doc[s.i] == '\t' || s.doc[s.i] == '\n') {
		s.i++
	}
}

// prolog skips white space and comments up to the root's '<'.
func (s *scanner) prolog() bool {
	for {
		s.space()
		if !s.has("<!--") {
			return s.has("<") && !s.has("<!") && !s.has("<?") && !s.has("</")
		}
		if !s.comment() {
			return false
		}
	}
}

// comment skips a comment starting at i. encoding/xml ends it at the first "--", which
// must be followed by '>', and does not check what it holds.
func (s *scanner) comment() bool {
	n := strings.Index(s.doc[s.i+4:], "--")
	if n < 0 {
		return false
	}
	s.i += 4 + n + 2
	if !s.has(">") {
		return false
	}
	s.i++
	return true
}

// startTag reads a start tag named want that is not empty.
func (s *scanner) startTag(want string) bool {
	s.i++ // '<'
	name, ok := s.name()
	if !ok || name != want {
		return false
	}
	empty, ok := s.attrs()
	return ok && !empty
}

// name reads an element or attribute name: ASCII letters, digits, '_', '.', '-', not
// starting with a digit, '.' or '-', and no colon (which would be a namespace prefix).
// It must end at an ASCII byte that cannot be in a name.
func (s *scanner) name() (string, bool) {
	start := s.i
	if s.i >= len(s.doc) || !isNameStart(s.doc[s.i]) {
		return "", false
	}
	s.i++
	for s.i < len(s.doc) && (isNameStart(s.doc[s.i]) || isNameRest(s.doc[s.i])) {
		s.i++
	}
	if s.i >= len(s.doc) || s.doc[s.i] == ':' || s.doc[s.i] >= utf8.RuneSelf {
		return "", false
	}
	return s.doc[start:s.i], true
}

func isNameStart(c byte) bool { return 'A' <= c && c <= 'Z' || 'a' <= c && c <= 'z' || c == '_' }
func isNameRest(c byte) bool  { return '0' <= c && c <= '9' || c == '.' || c == '-' }

// attrs reads the rest of a start tag after its name, through its '>', and reports
// whether it was empty (/>). Like encoding/xml it needs no space between attributes.
func (s *scanner) attrs() (empty, ok bool) {
	for {
		s.space()
		switch {
		case s.has("/>"):
			s.i += 2
			return true, true
		case s.has(">"):
			s.i++
			return false, true
		}
		name, ok := s.name()
		if !ok || name == "xmlns" {
			return false, false
		}
		s.space()
		if !s.has("=") {
			return false, false
		}
		s.i++
		s.space()
		if !s.has(`"`) && !s.has("'") {
			return false, false
		}
		quote := s.doc[s.i]
		s.i++
		if !s.chars(quote) {
			return false, false
		}
		s.i++ // the closing quote
	}
}

// endTagRest reads the rest of an end tag after its name.
func (s *scanner) endTagRest() bool {
	s.space()
	if !s.has(">") {
		return false
	}
	s.i++
	return true
}

// text skips character data up to the next '<'.
func (s *scanner) text() bool {
	return s.chars('<') && s.i < len(s.doc)
}

// chars skips characters up to stop, which it does not consume: an attribute value
// (stop is its quote) or text (stop is '<'). Both fail at '<' (unescaped in a value),
// '&' (an entity), '\r', ']' (in text, it could begin "]]>"), a character outside XML's
// range or invalid UTF-8, and at the end of doc.
func (s *scanner) chars(stop byte) bool {
	for {
		for s.i < len(s.doc) && plain[s.doc[s.i]] {
			s.i++
		}
		if s.i == len(s.doc) {
			return stop == '<' // text may run to the end; the caller decides
		}
		switch c := s.doc[s.i]; {
		case c == stop:
			return true
		case c == '\'' || c == '"' || c == ']' && stop != '<':
			s.i++
		case c >= utf8.RuneSelf:
			r, n := utf8.DecodeRuneInString(s.doc[s.i:])
			if r == utf8.RuneError && n == 1 || !inCharRange(r) {
				return false
			}
			s.i += n
		default: // '<', '&', ']' in text, '\r' and other control characters
			return false
		}
	}
}

// plain holds the ASCII bytes chars passes over whatever it reads: XML characters
// other than '\r', markup ('<', '&', ']') and quotes.
var plain = func() (t [256]bool) {
	for c := 0x20; c < utf8.RuneSelf; c++ {
		t[c] = true
	}
	for _, c := range "<&]'\"" {
		t[c] = false
	}
	t['\t'], t['\n'] = true, true
	return t
}()

// inCharRange reports whether a non-ASCII rune is an XML character.
func inCharRange(r rune) bool {
	return r <= 0xD7FF || 0xE000 <= r && r <= 0xFFFD || 0x10000 <= r
}
